"""How many 378 px crops Moondream 2 encodes for a frame, and so which frame size to ask for.

A port of `select_tiling` and the arithmetic of `overlap_crop_image` in Moondream's
`image_crops.py` (github.com/vikhyat/moondream, `moondream/torch/image_crops.py`, the code the
Hub repo ships as remote code). The model always encodes one *global* crop (the whole frame
squeezed to 378x378) plus a grid of overlapping *local* crops. Each local crop is 378 px, but
neighbours overlap by 4 patches of 14 px on every side, so a crop adds only a 266 px window and
the grid covers `tiles * 266 + 2 * 56` pixels per axis. The frame is resized to exactly that
before cutting, which is why sending more pixels than the grid holds buys nothing.

Facts this reproduces (and the tests check): a frame whose short side is <= 378 px costs 2 crops;
640x480 costs 9.
"""

from __future__ import annotations

import math

CROP_SIZE = 378  # VisionConfig.crop_size
PATCH_SIZE = 14  # VisionConfig.enc_patch_size
OVERLAP_MARGIN = 4  # VisionConfig.overlap_margin, in patches
MAX_CROPS = 12  # VisionConfig.max_crops: local crops, the global one comes on top

_MARGIN_PX = PATCH_SIZE * OVERLAP_MARGIN  # 56
_WINDOW_PX = (CROP_SIZE // PATCH_SIZE - 2 * OVERLAP_MARGIN) * PATCH_SIZE  # 266


def select_tiling(height: int, width: int, crop_size: int = _WINDOW_PX, max_crops: int = MAX_CROPS) -> tuple[int, int]:
    """Rows and columns of local crops for an area of `height` x `width` pixels (Moondream's rule)."""
    if height <= crop_size or width <= crop_size:
        return (1, 1)
    min_h = math.ceil(height / crop_size)
    min_w = math.ceil(width / crop_size)
    if min_h * min_w > max_crops:
        ratio = math.sqrt(max_crops / (min_h * min_w))
        return (max(1, math.floor(min_h * ratio)), max(1, math.floor(min_w * ratio)))
    h_tiles = max(math.floor(math.sqrt(max_crops * height / width)), min_h)
    w_tiles = max(math.floor(math.sqrt(max_crops * width / height)), min_w)
    if h_tiles * w_tiles > max_crops:
        if w_tiles > h_tiles:
            w_tiles = math.floor(max_crops / h_tiles)
        else:
            h_tiles = math.floor(max_crops / w_tiles)
    return (max(1, h_tiles), max(1, w_tiles))


def crop_count(width: int, height: int) -> int:
    """Crops the vision encoder runs for a `width` x `height` frame: 1 global + the local grid."""
    if width < 1 or height < 1:
        raise ValueError(f"A frame needs a positive size, got {width}x{height}.")
    # The margins are taken off before tiling: they are shared by the outermost crops only.
    rows, columns = select_tiling(height - 2 * _MARGIN_PX, width - 2 * _MARGIN_PX)
    return rows * columns + 1


def grid_span(tiles: int) -> int:
    """Pixels one axis of a `tiles`-crop grid holds without upscaling (1 -> 378, 2 -> 644, 3 -> 910)."""
    return tiles * _WINDOW_PX + 2 * _MARGIN_PX


# The two frame sizes camcap asks for (short side, in pixels).
# low: a single local crop. Any frame whose short side fits one window is encoded as 2 crops,
# the cheapest Moondream can do.
LOW_DETAIL_SIZE = grid_span(1)  # 378
# high: two rows of crops held at native resolution. A 640x480 webcam frame already costs 9 crops
# (it is *upscaled* to a 2x4 grid of 1176x644); asking for a 644 px short side keeps those same 9
# crops for 4:3 and 16:9 frames but fills them with real pixels instead of interpolated ones.
# One pixel more (645) starts a third row: 13 crops, 44 % more vision work (so not 756, which also
# costs 13). Much larger frames (1080p) fall back to 9 crops because Moondream shrinks them to fit
# its 12 tiles: their extra pixels are uploaded and decoded only to be thrown away.
HIGH_DETAIL_SIZE = grid_span(2)  # 644
