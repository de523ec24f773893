"""A decoded PyAV frame into what the model sees: RGB, upright, short side at most the model's size.

Only frames that will be captioned get here: swscale resizes while it converts, so an 8K or 1080p
frame never exists as full-size RGB.
"""

from __future__ import annotations

import av
from av.video.reformatter import VideoReformatter
from PIL import Image

_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def frame_to_image(frame: av.VideoFrame, max_short_side: int, rotation: int = 0) -> Image.Image:
    """`frame` as an upright RGB image whose short side is at most `max_short_side` (never upscaled).

    `rotation`: counter-clockwise degrees from the container, used when the frame carries none.
    """
    width, height = frame.width, frame.height
    short = min(width, height)
    if short > max_short_side:
        factor = max_short_side / short
        width, height = max(2, round(width * factor)), max(2, round(height * factor))
    # A reformatter of its own, not `frame.reformat`: that one is cached on the frame, and a source's
    # newest frame is converted by two threads at once (the caption loop at the model's size, a
    # snapshot at full size). They would share one swscale context, reconfigure it under each
    # other with the GIL released, and crash the process inside libswscale (seen in CI).
    rgb = VideoReformatter().reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
    image = rgb.to_image()
    turn = int(frame.rotation) % 360 if frame.rotation else rotation % 360
    if turn in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[turn])
    return image
