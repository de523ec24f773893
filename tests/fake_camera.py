"""A fake camera clip for Chromium's `--use-file-for-fake-video-capture`, and its decoder.

Every frame of the clip is a solid colour of its own with a barcode of its frame number along the
bottom, so a test that only sees a JPEG the page sent can tell *which* camera frame it was, that it
was not mirrored, and that its colours survived capture, resizing and encoding.

Layout of a frame (640x480): the top three quarters are the frame's colour; the bottom quarter is
a row of `CELLS` equal cells on grey: a white start guard, `BITS` data cells (most significant bit
first, white = 1), and a black end guard. A mirrored frame shows the guards swapped.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

from PIL import Image, ImageStat

WIDTH, HEIGHT = 640, 480
FPS = 20
BITS = 6
CELLS = BITS + 2  # start guard + data + end guard
BAND_TOP = 0.78  # the barcode band starts at this fraction of the height (colour area ends at 0.75)
FRAMES = 40  # a 2 s loop; < 2**BITS


def frame_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of frame `index`. Hues step by the golden angle, so neighbours differ a lot."""
    hue = (index * 0.381966) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def _rgb_to_limited_ycbcr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 with limited ("studio") range: Y in 16..235, Cb/Cr in 16..240.

    Chromium reads .y4m files as limited range; full-range values come back over-saturated.
    """
    r, g, b = (c / 255 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return round(y), round(cb), round(cr)


def _cells(index: int) -> list[bool]:
    bits = [bool(index >> (BITS - 1 - bit) & 1) for bit in range(BITS)]
    return [True, *bits, False]


def _frame_planes(index: int) -> bytes:
    y, cb, cr = _rgb_to_limited_ycbcr(frame_colour(index))
    colour_rows = int(HEIGHT * 0.75)
    band_top = int(HEIGHT * BAND_TOP)
    cell = WIDTH // CELLS
    bar_row = b"".join(bytes([235 if on else 16]) * cell for on in _cells(index))
    grey = bytes([128]) * WIDTH
    luma = bytes([y]) * (WIDTH * colour_rows) + grey * (band_top - colour_rows) + bar_row * (HEIGHT - band_top)
    # 4:2:0 chroma: half width, half height. The band is neutral (128), the colour area is not.
    chroma_w, chroma_h, chroma_colour_rows = WIDTH // 2, HEIGHT // 2, colour_rows // 2
    neutral = bytes([128]) * (chroma_w * (chroma_h - chroma_colour_rows))
    u = bytes([cb]) * (chroma_w * chroma_colour_rows) + neutral
    v = bytes([cr]) * (chroma_w * chroma_colour_rows) + neutral
    return luma + u + v


def write_y4m(path: Path, frames: int = FRAMES) -> Path:
    """Write the clip (about 0.46 MB per frame) and return its absolute path."""
    path = path.resolve()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            out.write(b"FRAME\n")
            out.write(_frame_planes(index))
    return path


class NotAClipFrame(AssertionError):
    """The image does not look like a frame of the clip (wrong content, mirrored, or garbled)."""


def _mean(image: Image.Image, box: tuple[float, float, float, float]) -> tuple[float, ...]:
    w, h = image.size
    left, top, right, bottom = box
    region = image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    return tuple(ImageStat.Stat(region).mean)


def decode_frame(image: Image.Image, frames: int = FRAMES, tolerance: float = 40.0) -> int:
    """The clip frame number an image shows, whatever size it was scaled to.

    Raises `NotAClipFrame` if the guards are wrong (e.g. the frame was mirrored), the number is
    out of range, or the colour is not that frame's colour within `tolerance` per channel.
    """
    rgb = image.convert("RGB")
    grey = rgb.convert("L")
    band_top, band_bottom = BAND_TOP + 0.04, 0.96
    levels = []
    for cell in range(CELLS):
        # The middle half of each cell: far from the edges that JPEG and scaling blur.
        left = (cell + 0.25) / CELLS
        right = (cell + 0.75) / CELLS
        levels.append(_mean(grey, (left, band_top, right, band_bottom))[0])
    if not levels[0] > 180 > 60 > levels[-1]:
        raise NotAClipFrame(
            f"Barcode guards not found (start {levels[0]:.0f}, end {levels[-1]:.0f}; "
            "expected white then black): the frame is mirrored or is not from the clip."
        )
    threshold = (levels[0] + levels[-1]) / 2
    index = 0
    for level in levels[1:-1]:
        index = index << 1 | (level > threshold)
    if index >= frames:
        raise NotAClipFrame(f"Decoded frame number {index}, but the clip has only {frames} frames.")
    seen = _mean(rgb, (0.1, 0.1, 0.9, 0.65))
    expected = frame_colour(index)
    if any(abs(s - e) > tolerance for s, e in zip(seen, expected, strict=True)):
        raise NotAClipFrame(
            f"Frame {index} should be RGB {expected} but the image shows ({seen[0]:.0f}, {seen[1]:.0f}, {seen[2]:.0f})."
        )
    return index
