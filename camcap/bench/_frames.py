"""Synthetic camera frames, made in code (no files), and the client's side of sending one.

The scene is a textured gradient with a few shapes moving across it, plus per-frame sensor
noise, so that consecutive frames differ the way a webcam's do: JPEGs of a realistic size, no
two frames alike, and a still scene that is still only up to noise (what change gating must
tell apart from motion).
"""

from __future__ import annotations

import io
import json
import random
import struct
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw

from camcap.server.messages import FRAME_MAGIC

CAMERA_SIZE = (640, 480)
JPEG_QUALITY = 80  # the page's default (controls.js: quality 0.8)
_NOISE_LAYERS = 8  # distinct sensor-noise patterns, cycled: enough that no two neighbours match


@dataclass(frozen=True)
class _Shape:
    colour: tuple[int, int, int]
    radius: float  # fraction of the frame's height
    start: tuple[float, float]  # fractions of width and height
    speed: tuple[float, float]  # fractions of width / height per frame
    ellipse: bool


class Scene:
    """A synthetic camera: `frame(i)` is the i-th picture at `size`, deterministic for a seed."""

    def __init__(self, size: tuple[int, int] = CAMERA_SIZE, *, seed: int = 0, noise: float = 3.0) -> None:
        self.size = size
        rng = random.Random(seed)
        width, height = size
        gradient = Image.linear_gradient("L").resize(size)
        texture = Image.effect_noise(size, 24.0)
        self._background = Image.merge("RGB", (gradient, texture, gradient.transpose(Image.Transpose.ROTATE_180)))
        draw = ImageDraw.Draw(self._background)
        for _ in range(12):  # static clutter: edges JPEG has to spend bytes on, like a room's
            x, y = rng.randrange(width), rng.randrange(height)
            draw.rectangle((x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 90)), fill=_colour(rng))
        self._shapes = [
            _Shape(
                _colour(rng),
                rng.uniform(0.06, 0.15),
                (rng.random(), rng.random()),
                (rng.uniform(0.004, 0.012), rng.uniform(0.003, 0.009)),
                ellipse=index % 2 == 0,
            )
            for index in range(4)
        ]
        # Sensor noise centred on 128, added with an offset of -128 (see _with_noise).
        self._noise = [Image.effect_noise(size, noise).convert("RGB") for _ in range(_NOISE_LAYERS)]

    def frame(self, index: int, *, position: int | None = None) -> Image.Image:
        """Picture `index`, with the shapes where they are at time `position` (default: `index`).

        A fixed `position` is a still scene: only the sensor noise changes from frame to frame.
        """
        image = self._background.copy()
        draw = ImageDraw.Draw(image)
        width, height = self.size
        step = index if position is None else position
        for shape in self._shapes:
            x = _bounce(shape.start[0] + shape.speed[0] * step) * width
            y = _bounce(shape.start[1] + shape.speed[1] * step) * height
            r = shape.radius * height
            box = (x - r, y - r, x + r, y + r)
            (draw.ellipse if shape.ellipse else draw.rectangle)(box, fill=shape.colour)
        return ImageChops.add(image, self._noise[index % _NOISE_LAYERS], scale=1.0, offset=-128)


def target_size(width: int, height: int, input_size: int | None) -> tuple[int, int]:
    """The page's rule (web/frames.js `targetSize`): short side = input_size, never upscaled."""
    short = min(width, height)
    if not input_size or short <= input_size:
        return width, height
    scale = input_size / short
    return (input_size, round(height * scale)) if width <= height else (round(width * scale), input_size)


def encode_jpeg(image: Image.Image, input_size: int | None, quality: int = JPEG_QUALITY) -> bytes:
    """What the page does to a camera picture before sending it: resize for the model, JPEG."""
    size = target_size(image.width, image.height, input_size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def pack_frame(seq: int, jpeg: bytes, *, captured_at: float, sent_at: float) -> bytes:
    """The binary WebSocket message (server/messages.py): magic, header length, JSON header, JPEG."""
    header = json.dumps({"seq": seq, "captured_at": captured_at, "sent_at": sent_at}).encode()
    return FRAME_MAGIC + struct.pack(">I", len(header)) + header + jpeg


def _bounce(position: float) -> float:
    """Fold a position that runs past an edge back into 0..1, like a ball between walls."""
    position %= 2.0
    return 2.0 - position if position > 1.0 else position


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)
