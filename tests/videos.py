"""Test videos made at test time with PyAV: scenes of simple coloured shapes changing at known times.

Tests that check what a caption says draw `demo:shapes` scenes (camcap/models/demo/scenes.py) and
pass the pictures to `make_video`; the plain scenes here are for timing and change detection.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

# Three scenes whose pictures differ everywhere, so every change measure sees them change.
RED_SQUARE = ((200, 40, 40), "square")
GREEN_CIRCLE = ((40, 180, 60), "circle")
BLUE_BAR = ((40, 60, 200), "bar")


def scene(colour: tuple[int, int, int], shape: str, size: tuple[int, int]) -> np.ndarray:
    """A shape of `colour` on a background of its complementary colour."""
    width, height = size
    image = Image.new("RGB", size, tuple(255 - c for c in colour))
    draw = ImageDraw.Draw(image)
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "bar":
        draw.rectangle((0, height // 3, width, 2 * height // 3), fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return np.asarray(image)


def make_video(
    path: Path,
    scenes: Sequence[tuple[tuple[tuple[int, int, int], str] | np.ndarray, float]],
    *,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    gop: int | None = None,
    rotation: int | None = None,
    frame_times: Sequence[float] | None = None,
    faststart: bool = False,
) -> Path:
    """An H.264 (VP8 in WebM) video of `scenes` ((colour, shape), seconds), in the container `path`'s suffix names.

    A scene may also be a ready picture (an RGB array of `size`), e.g. a `demo:shapes` scene.

    `frame_times`: explicit presentation times in seconds (a variable frame rate); each frame shows
    the scene whose span holds its time. `rotation`: a display matrix turning the picture
    counter-clockwise, as phones write. `faststart`: an MP4 whose index comes first.
    """
    container = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    webm = path.suffix == ".webm"  # WebM holds VP8/VP9, not H.264
    stream = container.add_stream("libvpx" if webm else "libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.options = {"deadline": "realtime"} if webm else {"preset": "ultrafast"}
    if gop is not None:
        stream.codec_context.gop_size = gop
    if rotation is not None:
        stream.set_display_rotation(rotation)
    ends = np.cumsum([seconds for _, seconds in scenes])
    variable = frame_times is not None
    if frame_times is None:
        frame_times = [index / fps for index in range(round(ends[-1] * fps))]
    else:
        stream.codec_context.time_base = Fraction(1, 1000)
    pictures = [look if isinstance(look, np.ndarray) else scene(*look, size) for look, _ in scenes]
    for index, t in enumerate(frame_times):
        which = min(int(np.searchsorted(ends, t, side="right")), len(pictures) - 1)
        frame = av.VideoFrame.from_ndarray(pictures[which], format="rgb24")
        if variable:
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
        else:
            frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


THREE_SCENES = [(RED_SQUARE, 2.0), (GREEN_CIRCLE, 2.0), (BLUE_BAR, 2.0)]
