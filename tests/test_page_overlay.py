"""Boxes and points drawn on the picture: placed with the mirror and the letterbox, labelled
readably, and listed in words for screen readers.

Real Chromium with the fake camera against a real `camcap serve` (random-weight BLIP, which can
only caption). Playwright sits on the WebSocket between them (route_web_socket): it tells the
page the model can detect and point, forwards the page's detect config as a plain caption
request, and adds known boxes and points to the real caption events that come back. So the page
code under test is the real one end to end; only the model's answer is synthetic.

The injected box covers the clip's white start-guard cell (tests/fake_camera.py: the bottom-left
cell of the barcode band), so the screenshot must show white inside the drawn box, mirrored or not.
"""

# Fixtures imported from tests/page_browser.py are then named as test parameters (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from tests.fake_camera import BAND_TOP, CELLS
from tests.page_browser import (  # noqa: F401  (fixtures)
    Server,
    artifact,
    camcap_server,
    chromium,
    chromium_path,
    context,
    page,
    page_errors,
    wait_for,
)

pytestmark = pytest.mark.browser

# The white start guard of the clip's barcode, with a margin inside it.
GUARD_BOX = {"x_min": 0.02, "y_min": 0.82, "x_max": 0.1, "y_max": 0.96}
assert 0 < GUARD_BOX["x_min"] < GUARD_BOX["x_max"] < 1 / CELLS and GUARD_BOX["y_min"] > BAND_TOP
POINT = {"x": 0.7, "y": 0.3}
TARGET = "guard"


def _route_with_detections(page: Any) -> list[dict[str, Any]]:
    """Put Playwright between the page and the server; returns the configs the page sent."""
    configs: list[dict[str, Any]] = []

    def handler(ws: Any) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str):
                config = json.loads(message)
                configs.append(config)
                if config.get("task") in ("detect", "point"):
                    message = json.dumps({"type": "config", "task": "caption"})  # all BLIP can do
            server.send(message)

        def to_page(message: str | bytes) -> None:
            event = json.loads(message)
            if event["type"] == "ready":
                event["model"]["tasks"] = ["caption", "detect", "point"]
            elif event["type"] == "caption":
                event.update(task="detect", text=f"2 × {TARGET}", boxes=[GUARD_BOX], points=[POINT])
            ws.send(json.dumps(event))

        ws.on_message(to_server)
        server.on_message(to_page)

    page.route_web_socket("**/v1/stream", handler)
    return configs


GEOMETRY_JS = """() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  };
  const video = document.getElementById("video");
  const rect = document.querySelector(".overlay-box rect:not(.overlay-backing)");
  const circle = document.querySelector(".overlay-point circle");
  const labels = [...document.querySelectorAll(".overlay-label")];
  return {
    video: box(video),
    videoWidth: video.videoWidth,
    videoHeight: video.videoHeight,
    rect: rect && box(rect),
    circle: circle && box(circle),
    labels: labels.map((l) => ({...box(l), text: l.textContent, fontSize: parseFloat(getComputedStyle(l).fontSize)})),
    list: [...document.querySelectorAll("#detections li")].map((li) => li.textContent),
    live: document.getElementById("caption-live").textContent,
  };
}"""

# Measured after two animation frames: a viewport change lays the video out at once, but the
# overlay follows in its ResizeObserver callback, which runs in the next rendering step (before
# that frame is painted, so no user sees the lag; a measurement taken in between does).
SETTLED_GEOMETRY_JS = f"""async () => {{
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return ({GEOMETRY_JS})();
}}"""


def _expected_picture(g: dict[str, Any]) -> dict[str, float]:
    """Where object-fit: contain puts the camera picture inside the video element."""
    video = g["video"]
    scale = min(video["width"] / g["videoWidth"], video["height"] / g["videoHeight"])
    width, height = g["videoWidth"] * scale, g["videoHeight"] * scale
    left = video["left"] + (video["width"] - width) / 2
    top = video["top"] + (video["height"] - height) / 2
    return {"left": left, "top": top, "width": width, "height": height}


def _check(page: Any, mirror: bool, name: str) -> None:
    side = "right" if mirror else "left"
    announced = f"2 × {TARGET}: {TARGET} 1: bottom {side}"

    def drawn() -> dict[str, Any] | None:
        # Drawn at once when the mirror changes; announced with the next caption.
        g = page.evaluate(SETTLED_GEOMETRY_JS)
        return g if g["rect"] and g["videoWidth"] and g["live"].startswith(announced) else None

    g = wait_for(page, drawn, f"a drawn box announced as {announced!r}")
    picture = _expected_picture(g)
    x0, x1 = (1 - GUARD_BOX["x_max"], 1 - GUARD_BOX["x_min"]) if mirror else (GUARD_BOX["x_min"], GUARD_BOX["x_max"])
    expected = {
        "left": picture["left"] + x0 * picture["width"],
        "top": picture["top"] + GUARD_BOX["y_min"] * picture["height"],
        "right": picture["left"] + x1 * picture["width"],
        "bottom": picture["top"] + GUARD_BOX["y_max"] * picture["height"],
    }
    # The stroke (3 px, centred on the edge) widens the element's box by 1.5 px each side.
    for edge, value in expected.items():
        assert g["rect"][edge] == pytest.approx(value, abs=2.5), f"{name}: box {edge} {g['rect']} vs {expected}"
    px = (1 - POINT["x"] if mirror else POINT["x"]) * picture["width"] + picture["left"]
    py = POINT["y"] * picture["height"] + picture["top"]
    cx = (g["circle"]["left"] + g["circle"]["right"]) / 2
    cy = (g["circle"]["top"] + g["circle"]["bottom"]) / 2
    assert (cx, cy) == (pytest.approx(px, abs=1.5), pytest.approx(py, abs=1.5)), f"{name}: point misplaced"

    # Labels: readable size, unmirrored text, inside the picture.
    assert [label["text"] for label in g["labels"]] == [f"{TARGET} 1", f"{TARGET} 2"]
    for label in g["labels"]:
        assert label["fontSize"] >= 14
        assert picture["left"] - 0.5 <= label["left"] and label["right"] <= picture["left"] + picture["width"] + 0.5
        assert picture["top"] - 0.5 <= label["top"] and label["bottom"] <= picture["top"] + picture["height"] + 0.5

    # In words, as seen on screen: the guard cell is bottom left of the camera's picture.
    assert g["list"][0] == f"{TARGET} 1: bottom {side} (8% wide, 14% high)"
    assert g["list"][1] == f"{TARGET} 2: top {'left' if mirror else 'right'}"

    # The picture under the drawn box is the white guard cell.
    shot = Image.open(io.BytesIO(page.screenshot(path=artifact(f"overlay-{name}.png")))).convert("L")
    centre = ((expected["left"] + expected["right"]) / 2, (expected["top"] + expected["bottom"]) / 2)
    assert shot.getpixel(centre) > 200, f"{name}: the box at {expected} is not over the white guard cell"


def test_boxes_and_points_are_drawn_over_the_picture(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    configs = _route_with_detections(page)
    page.goto(camcap_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")

    # The Task setting offers detect and point because the (claimed) model can.
    page.get_by_role("button", name="Settings").click()
    task = page.get_by_label("Task", exact=True)
    expect(page.locator("#task-select option[value=detect]")).to_be_enabled()
    task.select_option("detect")
    page.get_by_label("Object to find").fill(TARGET)
    page.get_by_label("Object to find").press("Enter")
    wait_for(page, lambda: any(c.get("task") == "detect" for c in configs), "the detect config")
    assert {"type": "config", "task": "detect", "target": TARGET} in configs
    page.get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Start camera").click()
    for name, size in (("desktop", (1280, 720)), ("phone", (390, 844))):
        page.set_viewport_size({"width": size[0], "height": size[1]})
        _check(page, mirror=True, name=f"{name}-mirrored")
        page.get_by_role("button", name="Mirror").click()
        _check(page, mirror=False, name=name)
        page.get_by_role("button", name="Mirror").click()
    assert page_errors == []


def test_a_caption_only_model_offers_no_detection(camcap_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(camcap_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    for task in ("detect", "point"):
        expect(page.locator(f"#task-select option[value={task}]")).to_be_disabled()
    expect(page.locator("#task-hint")).to_contain_text("cannot answer questions, find objects or point at objects")
