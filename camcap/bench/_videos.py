"""H.264 clips of the bench's synthetic scene, written with PyAV for the video and live-source scenarios."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from camcap.bench._frames import Scene

# Distinct pictures drawn; a clip cycles through them (drawing 1080p frames is slower than encoding).
_PICTURES = 30


def write_clip(path: Path, *, seconds: float, fps: int = 30, size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """An MP4 (H.264, yuv420p, a keyframe every 2 s, as cameras and phones write) of a moving scene."""
    scene = Scene(seed=seed)
    pictures = [np.asarray(scene.frame(index).resize(size)) for index in range(_PICTURES)]
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = 2 * fps
    stream.codec_context.options = {"preset": "ultrafast"}
    for index in range(max(1, round(seconds * fps))):
        frame = av.VideoFrame.from_ndarray(pictures[index % _PICTURES], format="rgb24")
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path
