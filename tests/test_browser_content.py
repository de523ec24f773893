"""The page in real Chromium says what its camera shows: a fake camera of changing scenes, demo:shapes.

The fake camera plays a clip of drawn scenes (`camcap.models.demo.scenes`) that change every few
seconds. The test reads every JPEG the page sent, tells which scene it shows by comparing it with
the scenes themselves (not with the model), and checks each caption against that scene: a colour
channel swap, a mirrored frame or a caption attached to the wrong frame names the wrong shapes or
sides. After each scene change the next caption must already be about the new scene (freshness
judged by content), and the overlay and its ARIA live region read the same words.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from camcap.models.demo.scenes import SceneSpec, ShapeSpec, Truth, draw_scene
from tests.content import named, shown
from tests.page_browser import Server, finished_caption, launch_chromium, serve, wait_for
from tests.test_browser import (  # the page and wire helpers of the browser tests
    Wire,
    chromium_path,  # noqa: F401  (a fixture)
    page,  # noqa: F401  (a fixture)
    page_errors,  # noqa: F401  (a fixture)
    save_artifact,
)

pytestmark = pytest.mark.browser

MODEL = "demo:shapes"
WIDTH, HEIGHT, FPS = 640, 480, 5
SCENE_SECONDS = 4
SCENES = (
    SceneSpec((ShapeSpec("red", "circle", "left", size=0.34), ShapeSpec("blue", "square", "right", size=0.34))),
    SceneSpec((ShapeSpec("green", "triangle", "centre", size=0.42),), background="gradient", seed=2),
    SceneSpec((ShapeSpec("yellow", "square", "left", size=0.34), ShapeSpec("purple", "circle", "right", size=0.34))),
)


def _limited_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited range, as Chromium reads .y4m (full range comes back over-saturated)."""
    r, g, b = (rgb[..., i].astype(np.float32) / 255 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b

    def half(plane: np.ndarray) -> np.ndarray:  # 4:2:0: average each 2x2 block
        return plane.reshape(HEIGHT // 2, 2, WIDTH // 2, 2).mean(axis=(1, 3))

    return tuple(np.clip(np.round(p), 0, 255).astype(np.uint8) for p in (y, half(cb), half(cr)))  # type: ignore[return-value]


def write_scene_clip(path: Path, images: list[Image.Image]) -> Path:
    """A .y4m clip showing each image for SCENE_SECONDS, in order (Chromium loops it)."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for image in images:
            planes = b"".join(p.tobytes() for p in _limited_ycbcr(np.asarray(image.convert("RGB"))))
            for _ in range(SCENE_SECONDS * FPS):
                out.write(b"FRAME\n" + planes)
    return path.resolve()


@pytest.fixture(scope="module")
def scenes() -> list[tuple[Image.Image, Truth]]:
    return [draw_scene(spec, (WIDTH, HEIGHT)) for spec in SCENES]


@pytest.fixture(scope="module")
def chromium(chromium_path: str, scenes: list[tuple[Image.Image, Truth]], tmp_path_factory: Any) -> Iterator[Any]:  # noqa: F811
    clip = write_scene_clip(tmp_path_factory.mktemp("camera") / "scenes.y4m", [image for image, _ in scenes])
    with launch_chromium(chromium_path, clip) as browser:
        yield browser


@pytest.fixture(scope="module")
def demo_server(chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: Any) -> Iterator[Server]:  # noqa: F811
    with serve(subprocess_env, tmp_path_factory.mktemp("serve"), tokens=None, model=MODEL) as server:
        yield server


def which_scene(image: Image.Image, scenes: list[tuple[Image.Image, Truth]]) -> int:
    """The scene a sent frame shows, by its pixels: the nearest scene, which must be near.

    Judged on 32x24 thumbnails, so the page's resizing and JPEG do not matter; a mirrored or
    channel-swapped frame is near no scene and fails here, before the model is even asked.
    """

    def thumb(picture: Image.Image) -> np.ndarray:
        return np.asarray(picture.convert("RGB").resize((32, 24), Image.Resampling.BOX), dtype=np.float32)

    seen = thumb(image)
    distances = [float(np.abs(seen - thumb(reference)).mean()) for reference, _ in scenes]
    best = int(np.argmin(distances))
    assert distances[best] < 12, f"A sent frame matches no scene of the clip (mean differences {distances})"
    return best


def test_every_caption_names_the_scene_its_frame_showed(
    demo_server: Server,
    page: Any,  # noqa: F811
    page_errors: list[str],  # noqa: F811
    scenes: list[tuple[Image.Image, Truth]],
) -> None:
    from playwright.sync_api import expect

    wire = Wire.attach(page)
    page.goto(demo_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    expect(page.locator("#model-name")).to_have_text(MODEL)
    expect(page.locator("#demo-badge")).to_be_visible()
    expect(page.locator("#random-badge")).to_be_hidden()
    page.get_by_role("button", name="Start camera").click()

    scene_of: dict[int, int] = {}  # seq -> scene its frame showed

    def scenes_captioned() -> set[int]:
        by_seq = {frame.seq: frame for frame in wire.frames()}
        for event in wire.events("caption"):
            if event["seq"] not in scene_of:
                scene_of[event["seq"]] = which_scene(by_seq[event["seq"]].image, scenes)
        return set(scene_of.values())

    # Every scene of the clip captioned at least once (the clip is 3 x 4 s and loops).
    wait_for(page, lambda: len(scenes_captioned()) == len(scenes), "captions of all three scenes", timeout_s=120)

    captions = wire.events("caption")
    for event in captions:
        truth = scenes[scene_of[event["seq"]]][1]
        assert named(event["text"]) == shown(truth), (
            f"Frame {event['seq']} showed {truth.caption()!r} but was captioned {event['text']!r}"
        )

    # Freshness by content: the first frame the page sent of each new scene is itself captioned,
    # with the new scene's words (not gated as unchanged, not replaced, not answered late by an
    # older frame's caption).
    frames = {frame.seq: which_scene(frame.image, scenes) for frame in wire.frames()}
    order = sorted(frames)
    captioned = {event["seq"] for event in captions}
    for earlier, later in itertools.pairwise(order):
        if frames[later] != frames[earlier] and later <= max(captioned):
            assert later in captioned, f"Frame {later} was the first of a new scene but was not captioned"
            assert scene_of[later] == frames[later]
    seqs = [event["seq"] for event in captions]
    assert seqs == sorted(seqs), f"Captions arrived out of frame order: {seqs}"

    # The overlay and its ARIA live region read the words of a caption of the scene on screen.
    on_screen = finished_caption(page)
    wait_for(page, lambda: on_screen["seq"] in {*scenes_captioned(), *scene_of}, "its event")
    assert on_screen["live"] == on_screen["text"]
    truth = scenes[scene_of[on_screen["seq"]]][1]
    assert named(on_screen["text"]) == shown(truth), on_screen
    page.screenshot(path=save_artifact("browser-content.png"))
    assert page_errors == []
