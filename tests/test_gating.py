"""Change gating's measure (camcap.engine.change) and the default threshold chosen from it.

The scenes are synthetic but camera-like: a lit wall, a detailed picture, a textured rug, a table
with a cup and a book; a "shot" of a scene adds Gaussian sensor noise and JPEG encoding, as a
webcam and the page do. Run `python -m tests.test_gating` to print the measurements behind
`DEFAULT_CHANGE_THRESHOLD` (engine/options.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from camcap.engine.change import CELL_LEVELS, SIGNATURE_SIZE, ChangeGate, difference, signature
from camcap.engine.events import Frame
from camcap.engine.frames import decode_image
from camcap.engine.options import DEFAULT_CHANGE_THRESHOLD, StreamOptions
from camcap.models.base import Task

WIDTH, HEIGHT = 512, 384  # a 640x480 camera at input_size 384


@dataclass(frozen=True)
class Scene:
    cup: tuple[int, int] | None = (300, 200)  # None: no cup
    phone: bool = True  # a dark phone on the table, 0.2 % of the frame
    book: tuple[int, int] = (380, 230)
    hand: tuple[int, int] | None = None
    light: float = 1.0  # brightness factor (auto exposure)
    shift: int = 0  # camera shake, pixels to the right
    figure: int = 0  # a figure this many grey levels darker than the wall behind it, 15 % of the frame


def render(scene: Scene, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
    wall = Image.linear_gradient("L").resize((WIDTH, HEIGHT)).point(lambda v: 150 + v // 4)
    image = Image.merge("RGB", (wall, wall.point(lambda v: v - 10), wall.point(lambda v: v - 30)))
    art = Image.effect_mandelbrot((140, 100), (-2.0, -1.2, 0.8, 1.2), 60)
    image.paste(Image.merge("RGB", (art, art.point(lambda v: 255 - v), art.point(lambda v: v // 2))), (40, 40))
    rug_noise = np.random.default_rng(7).normal(128, 60, (90, WIDTH)).clip(0, 255).astype(np.uint8)
    rug = Image.fromarray(rug_noise).filter(ImageFilter.GaussianBlur(1.5))
    image.paste(Image.merge("RGB", (rug, rug.point(lambda v: v // 2), rug.point(lambda v: v // 3))), (0, HEIGHT - 90))
    draw = ImageDraw.Draw(image)
    draw.rectangle((200, 240, 480, 260), fill=(110, 70, 40))  # table top and legs
    draw.rectangle((215, 260, 230, 300), fill=(90, 60, 30))
    draw.rectangle((450, 260, 465, 300), fill=(90, 60, 30))
    bx, by = scene.book
    draw.rectangle((bx, by - 12, bx + 60, by + 8), fill=(30, 60, 160))
    if scene.phone:
        draw.rectangle((240, 226, 268, 240), fill=(25, 25, 30))
    if scene.cup is not None:
        cx, cy = scene.cup
        draw.rectangle((cx, cy, cx + 28, cy + 38), fill=(220, 220, 215), outline=(60, 60, 60))
    draw.text((260, 60), "camcap test scene", fill=(20, 20, 20))
    if scene.hand is not None:
        hx, hy = scene.hand
        draw.ellipse((hx, hy, hx + 70, hy + 100), fill=(200, 150, 120))
    if scene.figure:
        box = (150, 60, 300, 360)
        darker = image.crop(box).point(lambda v: max(0, v - scene.figure))
        mask = Image.new("L", darker.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, *darker.size), fill=255)
        image.paste(darker, box[:2], mask)
    if scene.light != 1.0:
        image = image.point(lambda v: min(255, round(v * scene.light)))
    if scene.shift:
        image = ImageChops.offset(image, scene.shift, 0)
    return image if size == (WIDTH, HEIGHT) else image.resize(size, Image.Resampling.BICUBIC)


def shoot(image: Image.Image, *, noise: float = 3.0, quality: int = 80, seed: int = 0) -> Image.Image:
    """What the server decodes: the scene plus sensor noise, JPEG-encoded by the page."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return decode_image(buffer.getvalue()).image


def measure(first: Image.Image, second: Image.Image) -> float:
    return difference(signature(first), signature(second))


BASE = Scene()
SMALL = (298, 224)  # a model with input_size 224


def _pair(a: Scene, b: Scene, size: tuple[int, int] = (WIDTH, HEIGHT), noise: float = 3.0) -> Callable[[], float]:
    """Two shots, different sensor noise: scene `a`, then scene `b`."""
    return lambda: measure(shoot(render(a, size), noise=noise, seed=1), shoot(render(b, size), noise=noise, seed=2))


def _qualities(low: int, high: int) -> Callable[[], float]:
    return lambda: measure(
        shoot(render(BASE), noise=4, quality=low, seed=1), shoot(render(BASE), noise=4, quality=high, seed=2)
    )


# The same scene: two shots must not count as a change.
SAME = {
    "noise sigma 2, JPEG q80": _pair(BASE, BASE, noise=2),
    "noise sigma 3, JPEG q80": _pair(BASE, BASE, noise=3),
    "noise sigma 4, JPEG q80": _pair(BASE, BASE, noise=4),
    "dim room: noise sigma 8, JPEG q80": _pair(BASE, BASE, noise=8),
    "noise sigma 4, JPEG q60 vs q95": _qualities(60, 95),
    "noise sigma 4, JPEG q30 vs q95": _qualities(30, 95),
    "298x224 frames, noise sigma 4": _pair(BASE, BASE, SMALL, noise=4),
}
# Small real changes: each must count.
CHANGED = {
    "a cup (0.5 % of the frame) moves 5 % of the width": _pair(BASE, Scene(cup=(326, 200))),
    "the cup moves 2 % of the width": _pair(BASE, Scene(cup=(310, 200))),
    "a phone (0.2 % of the frame) is removed": _pair(BASE, Scene(phone=False)),
    "the cup is removed": _pair(BASE, Scene(cup=None)),
    "a hand enters at the edge": _pair(BASE, Scene(hand=(470, 150))),
    "a book moves 8 % of the width": _pair(BASE, Scene(book=(340, 230))),
    "a low-contrast figure (15 % of the frame, 12 levels)": _pair(BASE, Scene(figure=12)),
    "298x224 frames: the cup moves 5 %": _pair(BASE, Scene(cup=(326, 200)), SMALL),
    "298x224 frames, dim room (noise sigma 8): the cup moves 5 %": _pair(BASE, Scene(cup=(326, 200)), SMALL, noise=8),
}
# Neither: measured and reported, not asserted. Above the threshold, they cost a caption, no more.
OTHER = {
    "298x224 frames, dim room (noise sigma 8)": _pair(BASE, BASE, SMALL, noise=8),
    "298x224 frames, very dark (noise sigma 12)": _pair(BASE, BASE, SMALL, noise=12),
    "298x224 frames, very dark (noise sigma 16)": _pair(BASE, BASE, SMALL, noise=16),
    "the whole picture 2 % brighter": _pair(BASE, Scene(light=1.02)),
    "the whole picture 5 % brighter": _pair(BASE, Scene(light=1.05)),
    "the camera shakes by 1 px": _pair(BASE, Scene(shift=1)),
    "the lights dim by 15 %": _pair(BASE, Scene(light=0.85)),
}


@pytest.mark.parametrize("case", SAME)
def test_the_same_scene_shot_twice_is_below_the_default_threshold(case):
    assert SAME[case]() < DEFAULT_CHANGE_THRESHOLD


@pytest.mark.parametrize("case", CHANGED)
def test_a_small_real_change_is_over_the_default_threshold(case):
    assert CHANGED[case]() >= DEFAULT_CHANGE_THRESHOLD


def test_identical_frames_differ_by_zero_and_the_measure_is_symmetric():
    a, b = shoot(render(BASE), seed=1), shoot(render(Scene(cup=None)), seed=2)
    assert measure(a, a) == 0.0
    assert measure(a, b) == measure(b, a) > 0


def test_the_difference_is_the_share_of_cells_that_moved_by_more_than_a_few_levels():
    grey = Image.new("RGB", (64, 48), (100, 100, 100))
    assert measure(grey, Image.new("RGB", (64, 48), (100 + CELL_LEVELS,) * 3)) == 0.0  # below the noise floor
    assert measure(grey, Image.new("RGB", (64, 48), (0, 0, 200))) == 100.0
    half = grey.copy()
    ImageDraw.Draw(half).rectangle((0, 0, 31, 47), fill=(160, 160, 160))
    assert measure(grey, half) == 50.0


def test_the_signature_is_a_small_grey_thumbnail_whatever_the_frame_size():
    for size in ((512, 384), (384, 512), (40, 30)):
        thumbnail = signature(Image.new("RGB", size, (10, 200, 30))).thumbnail
        assert (thumbnail.mode, thumbnail.size) == ("L", SIGNATURE_SIZE)


def test_decode_computes_the_signature_only_when_asked():
    buffer = io.BytesIO()
    render(BASE).save(buffer, "JPEG", quality=90)
    assert decode_image(buffer.getvalue()).signature is None
    decoded = decode_image(buffer.getvalue(), with_signature=True)
    assert decoded.signature is not None
    assert difference(decoded.signature, signature(decoded.image)) == 0.0


def _frame(seq: int, image: Image.Image, task: Task | None = None) -> Frame:
    return Frame(seq=seq, image=image, task=task or Task.caption(), signature=signature(image))


def test_the_gate_compares_with_the_frame_the_model_took():
    gate, options = ChangeGate(), StreamOptions()
    first, same, moved = (shoot(render(s), seed=i) for i, s in enumerate((BASE, BASE, Scene(cup=(326, 200)))))
    assert gate.check(_frame(0, first), options, now=0.0) is None  # nothing captioned yet
    gate.remember(_frame(0, first), taken_at=0.0)
    result = gate.check(_frame(1, same), options, now=1.0)
    assert result is not None and result[0].seq == 0 and result[1] < DEFAULT_CHANGE_THRESHOLD
    assert gate.check(_frame(2, moved), options, now=1.0) is None
    assert gate.check(_frame(3, same, Task.query("Who is there?")), options, now=1.0) is None
    assert gate.check(_frame(4, same), StreamOptions(change_threshold=0), now=1.0) is None
    assert gate.check(_frame(5, same), StreamOptions(max_unchanged_s=30), now=30.0) is None  # forced refresh
    gate.forget(seq=99)  # another frame's failure changes nothing
    assert gate.check(_frame(6, same), options, now=1.0) is not None
    gate.forget(seq=0)
    assert gate.check(_frame(7, same), options, now=1.0) is None


def test_a_change_of_exactly_the_threshold_is_captioned():
    """Below the threshold a frame is unchanged; a change of exactly the threshold is worth a caption."""
    grey = Image.new("RGB", (64, 48), (100, 100, 100))
    half = grey.copy()
    ImageDraw.Draw(half).rectangle((0, 0, 31, 47), fill=(160, 160, 160))  # 50 % of the cells
    gate = ChangeGate()
    gate.remember(_frame(0, grey), taken_at=0.0)
    assert gate.check(_frame(1, half), StreamOptions(change_threshold=50.0), now=1.0) is None
    result = gate.check(_frame(2, half), StreamOptions(change_threshold=50.5), now=1.0)
    assert result is not None and result[1] == 50.0


def test_a_forced_caption_comes_after_any_max_unchanged_s_and_never_with_zero():
    gate, still = ChangeGate(), shoot(render(BASE))
    gate.remember(_frame(0, still), taken_at=100.0)
    half_a_second = StreamOptions(max_unchanged_s=0.5)
    assert gate.check(_frame(1, still), half_a_second, now=100.4) is not None
    assert gate.check(_frame(2, still), half_a_second, now=100.5) is None  # forced
    never = StreamOptions(max_unchanged_s=0)
    assert gate.check(_frame(3, still), never, now=100_000.0) is not None


def test_stream_options_are_checked():
    with pytest.raises(ValueError, match="change_threshold"):
        StreamOptions(change_threshold=-1)
    with pytest.raises(ValueError, match="stale_after_ms"):
        StreamOptions(stale_after_ms=-5)
    assert not StreamOptions(change_threshold=0).needs_signature
    assert StreamOptions(change_threshold=0, cut_stale=True).needs_signature


def main() -> None:
    """Print the measurements behind DEFAULT_CHANGE_THRESHOLD."""
    print(f"change metric (camcap.engine.change.difference), default threshold {DEFAULT_CHANGE_THRESHOLD}")
    for title, cases in (("same scene", SAME), ("small real change", CHANGED), ("other", OTHER)):
        print(title)
        for name, run in cases.items():
            print(f"  {run():6.2f}  {name}")
    image = shoot(render(BASE))
    import timeit

    per_signature = min(timeit.repeat(lambda: signature(image), number=200, repeat=3)) / 200 * 1000
    a, b = signature(image), signature(shoot(render(BASE), seed=9))
    per_difference = min(timeit.repeat(lambda: difference(a, b), number=2000, repeat=3)) / 2000 * 1000
    print(f"cost: signature {per_signature:.3f} ms (512x384), difference {per_difference:.3f} ms")


if __name__ == "__main__":
    main()
