"""Server cameras on the page, alone or in a grid beside the webcam (camcap/web/grid.js, tile.js,
source-tile.js, sources.js).

A real `camcap serve --model demo:shapes` captions two server cameras: `door`, a generated video
file played at its own rate and looped, and `yard`, an HTTP MJPEG camera served by the test. Real
Chromium's fake camera is the webcam. Each camera shows a different drawn scene, so a caption in
the wrong tile names the wrong shapes. The MJPEG camera is then stopped and its tile must say so.
Screenshots at desktop and phone size go to test-artifacts/ for a person to look at.
"""

# Fixtures imported from tests/page_browser.py are then named as test parameters (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from camcap.models.demo.scenes import SceneSpec, ShapeSpec, Truth, draw_scene
from tests.cameras import MjpegCamera
from tests.content import named, shown
from tests.live_server import free_port
from tests.page_browser import (  # noqa: F401  (fixtures)
    Server,
    artifact,
    chromium_path,
    context,
    launch_chromium,
    page,
    page_errors,
    serve,
    wait_for,
)
from tests.test_browser_content import write_scene_clip
from tests.test_page_layout import _overlap

pytestmark = pytest.mark.browser

MODEL = "demo:shapes"
# One scene per camera, told apart by colour and side (what tests/content.py compares).
DOOR = SceneSpec((ShapeSpec("red", "circle", "left", size=0.4),))
YARD = SceneSpec((ShapeSpec("blue", "square", "right", size=0.4),))
WEBCAM = SceneSpec((ShapeSpec("yellow", "triangle", "centre", size=0.45),), seed=3)
SOURCE_SIZE = (320, 240)
DESKTOP = (1280, 720)
PHONE = (390, 844)

# Every tile on screen and the boxes around them, measured in one go.
GRID_JS = """() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  };
  const visible = (el) => el.offsetParent !== null;
  const tiles = document.getElementById("tiles");
  return {
    viewport: {width: innerWidth, height: innerHeight},
    layout: tiles.dataset.layout,
    container: box(tiles),
    controls: [...document.querySelectorAll(".bar button")].filter(visible).map(box),
    header: box(document.querySelector(".topbar")),
    tiles: [...tiles.querySelectorAll(":scope > .tile")].filter((t) => !t.hidden).map((t) => {
      const caption = t.querySelector("[data-part=caption]");
      return {
        camera: t.dataset.camera,
        status: t.dataset.status ?? null,
        statusText: t.querySelector("[data-part=status]").textContent,
        snapshots: Number(t.dataset.snapshots ?? 0),
        tile: box(t),
        media: box(t.querySelector(".tile-media")),
        stats: box(t.querySelector(".stats")),
        age: t.querySelector("[data-stat=age]").textContent,
        inference: t.querySelector("[data-stat=inference]").textContent,
        caption: box(caption),
        hidden: caption.hidden,
        streaming: caption.dataset.streaming,
        seq: Number(caption.dataset.seq ?? -1),
        text: t.querySelector("[data-part=caption-text]").textContent,
        fontSize: parseFloat(getComputedStyle(t.querySelector("[data-part=caption-text]")).fontSize),
      };
    }),
  };
}"""


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _still_video(path: Path, image: Image.Image, seconds: float = 4.0, fps: int = 5) -> Path:
    """An H.264 MP4 showing `image` for `seconds` (the server plays it at its own rate, looping)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = image.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast"}
        picture = np.asarray(image.convert("RGB"))
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def truths() -> dict[str, Truth]:
    return {
        "door": draw_scene(DOOR, SOURCE_SIZE)[1],
        "yard": draw_scene(YARD, SOURCE_SIZE)[1],
        "webcam": draw_scene(WEBCAM, (640, 480))[1],
    }


@pytest.fixture(scope="module")
def yard_camera() -> Iterator[MjpegCamera]:
    camera = MjpegCamera(free_port(), frames=[_jpeg(draw_scene(YARD, SOURCE_SIZE)[0])])
    yield camera
    if not camera.stopping.is_set():
        camera.stop()


@pytest.fixture(scope="module")
def grid_server(
    chromium_path: str,
    subprocess_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    yard_camera: MjpegCamera,
) -> Iterator[Server]:
    clip = _still_video(tmp_path_factory.mktemp("clips") / "door.mp4", draw_scene(DOOR, SOURCE_SIZE)[0])
    sources = ("--source", f"door={clip}", "--source", f"yard={yard_camera.url}")
    # Still scenes: without change gating every camera is captioned again as soon as its turn comes.
    sources += ("--change-threshold", "0")
    with serve(subprocess_env, tmp_path_factory.mktemp("serve"), tokens=None, model=MODEL, args=sources) as server:
        yield server


@pytest.fixture(scope="module")
def chromium(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    clip = write_scene_clip(tmp_path_factory.mktemp("camera") / "webcam.y4m", [draw_scene(WEBCAM, (640, 480))[0]])
    with launch_chromium(chromium_path, clip) as browser:
        yield browser


def _tiles(page: Any) -> dict[str, dict[str, Any]]:
    return {tile["camera"]: tile for tile in page.evaluate(GRID_JS)["tiles"]}


def _captions_named(page: Any, truths: dict[str, Truth], cameras: set[str], after: dict[str, int]) -> dict:
    """Each of `cameras`' tiles once it shows a finished caption of a frame after `after[camera]`,
    and that caption names its own camera's scene."""

    def ready() -> dict[str, dict[str, Any]] | None:
        tiles = _tiles(page)
        done = {
            name: tile
            for name, tile in tiles.items()
            if name in cameras and tile["streaming"] == "false" and tile["seq"] > after.get(name, -1) and tile["text"]
        }
        return tiles if set(done) == cameras else None

    tiles = wait_for(page, ready, f"a new finished caption in each of {sorted(cameras)}", timeout_s=180)
    for name in cameras:
        assert named(tiles[name]["text"]) == shown(truths[name]), (
            f"The {name} tile, showing {truths[name].caption()!r}, reads {tiles[name]['text']!r}"
        )
    return tiles


def _assert_grid_layout(page: Any, where: str) -> dict[str, Any]:
    """The grid's tiles: inside their row of the stage, so no caption can slide under a control,
    and within each tile the caption covers neither the picture nor the stats."""
    g = page.evaluate(GRID_JS)
    assert g["layout"] == "grid", where
    for index, tile in enumerate(g["tiles"]):
        for part in ("media", "caption", "stats"):
            outer, inner = tile["tile"], tile[part]
            inside = all(
                outer[edge] - 0.5 <= inner[edge] if edge in ("left", "top") else inner[edge] <= outer[edge] + 0.5
                for edge in ("left", "top", "right", "bottom")
            )
            assert inside, f"{where}: the {tile['camera']} {part} {inner} spills out of its tile {outer}"
        for other in g["tiles"][index + 1 :]:
            assert not _overlap(tile["tile"], other["tile"]), f"{where}: tiles overlap: {tile['tile']} {other['tile']}"
    for control in g["controls"]:
        assert not _overlap(g["container"], control), f"{where}: the grid {g['container']} runs under {control}"
    assert not _overlap(g["container"], g["header"]), f"{where}: the grid runs under the header"
    for tile in g["tiles"]:
        name = f"{where}, {tile['camera']}"
        assert not _overlap(tile["caption"], tile["media"]), f"{name}: the caption covers the picture"
        assert not _overlap(tile["caption"], tile["stats"]), f"{name}: the caption covers the stats"
        assert tile["fontSize"] >= 16, f"{name}: caption text of {tile['fontSize']} px is too small to read"
        # Scrolled into view, a caption lies whole inside the grid (so above the controls).
        page.evaluate(
            "(name) => document.querySelector(`#tiles > [data-camera='${name}'] [data-part=caption]`)"
            ".scrollIntoView({block: 'nearest'})",
            tile["camera"],
        )
        seen = next(t for t in page.evaluate(GRID_JS)["tiles"] if t["camera"] == tile["camera"])
        cap, box = seen["caption"], g["container"]
        assert box["top"] - 0.5 <= cap["top"] and cap["bottom"] <= box["bottom"] + 0.5, (
            f"{name}: scrolled into view, the caption {cap} is still outside the grid {box}"
        )
        for control in g["controls"]:
            assert not _overlap(cap, control), f"{name}: the caption {cap} runs under a control {control}"
    return g


def test_the_grid_shows_every_camera_with_its_own_captions_snapshots_and_status(
    grid_server: Server,
    page: Any,
    page_errors: list[str],
    truths: dict[str, Truth],
    yard_camera: MjpegCamera,
) -> None:
    from playwright.sync_api import expect

    page.goto(grid_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    grid_button = page.get_by_role("button", name="Grid")
    grid_button.click()
    expect(grid_button).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Start camera").click()
    expect(page.get_by_role("button", name="Stop camera")).to_be_visible()
    assert set(_tiles(page)) == {"webcam", "door", "yard"}

    # Each tile's caption names its own camera's scene, and keeps being renewed.
    first = _captions_named(page, truths, {"webcam", "door", "yard"}, after={})
    again = _captions_named(page, truths, {"webcam", "door", "yard"}, after={k: t["seq"] for k, t in first.items()})
    for name in ("door", "yard"):
        tile = again[name]
        assert tile["status"] == "up" and tile["statusText"] == "Live", tile
        assert tile["age"] != "–" and tile["inference"] != "–", f"{name}: no stats {tile}"
    # Snapshots refresh while the tiles are on screen.
    wait_for(page, lambda: all(_tiles(page)[n]["snapshots"] >= 3 for n in ("door", "yard")), "refreshed snapshots")
    assert page.evaluate("() => document.querySelector(\"[data-camera='door'] img\").naturalWidth") == SOURCE_SIZE[0]

    page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
    g = _assert_grid_layout(page, "desktop")
    page.screenshot(path=artifact("grid-desktop.png"))
    assert len({round(t["tile"]["top"]) for t in g["tiles"]}) < len(g["tiles"]), "desktop: tiles side by side"

    page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
    g = _assert_grid_layout(page, "phone")
    page.evaluate("() => document.getElementById('tiles').scrollTo(0, 0)")
    page.screenshot(path=artifact("grid-phone.png"))
    lefts = {round(t["tile"]["left"]) for t in g["tiles"]}
    assert len(lefts) == 1, f"phone: one column expected, tiles start at x = {sorted(lefts)}"
    assert all(t["tile"]["width"] >= 0.9 * g["container"]["width"] - 2 * 16 for t in g["tiles"])
    page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})

    # A server camera's own History: its captions, of its own scene.
    page.get_by_role("button", name="History of door").click()
    panel = page.get_by_role("region", name="History of door")
    expect(panel).to_be_visible()
    texts = panel.locator(".history-text").all_text_contents()
    assert texts and all(named(text) == shown(truths["door"]) for text in texts), texts
    panel.get_by_role("button", name="Close").click()
    expect(panel).to_be_hidden()

    # The yard camera goes down: its tile says so, in words, and the others carry on.
    yard_camera.stop()
    down = wait_for(page, lambda: (t := _tiles(page)["yard"])["status"] == "down" and t, "the yard tile going down")
    status = down["statusText"]
    assert status.startswith("Down: ") and ("retrying in" in status or "reconnect" in status), status
    page.screenshot(path=artifact("grid-source-down.png"))
    before = {k: t["seq"] for k, t in _tiles(page).items()}
    _captions_named(page, truths, {"door", "webcam"}, after=before)
    assert page_errors == []


def test_a_server_camera_chosen_in_the_camera_picker_is_shown_alone(
    grid_server: Server, page: Any, page_errors: list[str], truths: dict[str, Truth]
) -> None:
    from playwright.sync_api import expect

    page.goto(grid_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    page.get_by_role("button", name="Start camera").click()
    expect(page.get_by_role("button", name="Stop camera")).to_be_visible()

    page.get_by_role("button", name="Settings").click()
    picker = page.get_by_label("Camera", exact=True)
    assert "door" in picker.locator("optgroup[label='Server cameras'] option").all_text_contents()
    picker.select_option(label="door")
    page.get_by_role("button", name="Close").click()

    # The door camera alone: its snapshot, caption and status; the webcam is stopped, not hidden.
    expect(page.get_by_role("button", name="Start camera")).to_be_visible()
    tiles = _captions_named(page, truths, {"door"}, after={})
    assert set(tiles) == {"door"}, f"only the chosen camera is on screen, not {sorted(tiles)}"
    wait_for(page, lambda: _tiles(page)["door"]["snapshots"] >= 1, "the door snapshot")
    expect(page.locator("#notice")).to_be_hidden()  # "Camera is off" is about the webcam, not on screen
    g = page.evaluate(GRID_JS)
    tile = g["tiles"][0]
    for control in g["controls"]:
        assert not _overlap(tile["caption"], control), f"the caption {tile['caption']} runs under {control}"
    assert not _overlap(tile["caption"], tile["media"]), "the caption covers the picture"
    page.screenshot(path=artifact("source-alone-desktop.png"))

    # Start camera goes back to the webcam.
    page.get_by_role("button", name="Start camera").click()
    expect(page.get_by_role("button", name="Stop camera")).to_be_visible()
    assert set(_tiles(page)) == {"webcam"}
    assert page_errors == []
