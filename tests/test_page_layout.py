"""The caption stays whole and readable at every size: phone portrait and landscape, tablet,
desktop and fullscreen, with a 40-token caption and a paragraph-long one.

Real Chromium with the fake camera against a real `camcap serve` whose random-weight model writes
captions of exactly that many tokens. At each size the test reads the boxes' geometry from the page
(caption, controls, stats, header, badge, and the letterboxed picture inside the video element)
and asserts that nothing hides the caption and the caption hides nothing. Screenshots go to
test-artifacts/ for a person to look at.
"""

# Fixtures imported from tests/page_browser.py are then named as test parameters (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.page_browser import (  # noqa: F401  (fixtures)
    Server,
    artifact,
    chromium,
    chromium_path,
    context,
    page,
    page_errors,
    serve,
    start_camera,
    wait_for,
)

pytestmark = pytest.mark.browser

SIZES = {
    "phone-portrait": (390, 844),
    "phone-landscape": (844, 390),
    "tablet": (768, 1024),
    "desktop": (1280, 720),
}
FULLSCREEN = (1920, 1080)

# One snapshot of every box that matters, taken in one go so a caption cannot change in between.
GEOMETRY_JS = """() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  };
  const visible = (el) => el.offsetParent !== null || getComputedStyle(el).position === "fixed";
  const caption = document.getElementById("caption");
  const text = document.getElementById("caption-text");
  const video = document.getElementById("video");
  const badge = document.getElementById("random-badge");
  // object-fit: contain letterboxes the picture inside the element: this is where it really is.
  const v = box(video);
  const scale = Math.min(v.width / video.videoWidth, v.height / video.videoHeight);
  const pw = video.videoWidth * scale, ph = video.videoHeight * scale;
  const picture = {left: v.left + (v.width - pw) / 2, top: v.top + (v.height - ph) / 2};
  picture.right = picture.left + pw; picture.bottom = picture.top + ph;
  return {
    viewport: {width: innerWidth, height: innerHeight},
    fullscreen: document.fullscreenElement?.id ?? null,
    hidden: caption.hidden,
    streaming: caption.dataset.streaming,
    words: text.textContent.trim().split(/\\s+/).filter(Boolean).length,
    caption: box(caption),
    scrollHeight: caption.scrollHeight,
    clientHeight: caption.clientHeight,
    overflowY: getComputedStyle(caption).overflowY,
    fontSize: parseFloat(getComputedStyle(text).fontSize),
    controls: [...document.querySelectorAll(".bar button")].filter(visible).map(box),
    stats: box(document.getElementById("stats")),
    header: box(document.querySelector(".topbar")),
    badge: box(badge),
    badgeFontSize: parseFloat(getComputedStyle(badge).fontSize),
    picture,
  };
}"""


def _overlap(a: dict[str, float], b: dict[str, float], slack: float = 0.5) -> bool:
    return (
        a["left"] < b["right"] - slack
        and b["left"] < a["right"] - slack
        and a["top"] < b["bottom"] - slack
        and b["top"] < a["bottom"] - slack
    )


def _finished_caption(page: Any, min_words: int, timeout_s: float = 120) -> dict[str, Any]:
    """The geometry once a whole caption of at least `min_words` words is on screen."""

    def ready() -> dict[str, Any] | None:
        g = page.evaluate(GEOMETRY_JS)
        return g if not g["hidden"] and g["streaming"] == "false" and g["words"] >= min_words else None

    return wait_for(page, ready, f"a finished caption of at least {min_words} words", timeout_s)


def assert_caption_readable(g: dict[str, Any], where: str) -> None:
    vw, vh = g["viewport"]["width"], g["viewport"]["height"]
    cap = g["caption"]
    assert cap["left"] >= 0 and cap["top"] >= 0 and cap["right"] <= vw + 0.5 and cap["bottom"] <= vh + 0.5, (
        f"{where}: the caption box {cap} leaves the {vw}x{vh} viewport"
    )
    for control in g["controls"]:
        assert not _overlap(cap, control), f"{where}: the caption {cap} runs under a control {control}"
    assert not _overlap(cap, g["stats"]), f"{where}: the caption {cap} overlaps the stats {g['stats']}"
    assert not _overlap(cap, g["header"]), f"{where}: the caption {cap} overlaps the header {g['header']}"
    assert not _overlap(cap, g["picture"]), f"{where}: the caption {cap} covers the picture {g['picture']}"
    assert g["fontSize"] >= 16, f"{where}: caption text of {g['fontSize']} px is too small to read"
    if g["scrollHeight"] > g["clientHeight"] + 1:
        # Longer than its box: it must scroll (nothing cut off), and show at least two lines at a time.
        assert g["overflowY"] in ("auto", "scroll"), f"{where}: a caption taller than its box is cut off"
        assert g["clientHeight"] >= 2 * g["fontSize"], f"{where}: the caption box is {g['clientHeight']} px tall"
    # The random-weights badge: one line, inside the header, and the header over nothing else.
    assert g["badge"]["height"] < 2.2 * g["badgeFontSize"], f"{where}: the badge wraps: {g['badge']}"
    header = g["header"]
    assert header["top"] - 0.5 <= g["badge"]["top"] and g["badge"]["bottom"] <= header["bottom"] + 0.5, (
        f"{where}: the badge {g['badge']} spills out of the header {header}"
    )
    assert g["badge"]["right"] <= vw + 0.5, f"{where}: the badge {g['badge']} runs off the screen"
    assert not _overlap(header, g["picture"]), f"{where}: the header {header} covers the picture"
    for control in g["controls"]:
        assert not _overlap(control, g["picture"]), f"{where}: a control {control} covers the picture"


def _check_every_size(page: Any, label: str, min_words: int) -> None:
    # One caption is enough: the page sends one frame every 10 minutes (Settings' fixed interval),
    # so the same whole caption is measured at every size. A long
    # caption on a busy CPU can take minutes: a generous bound for the first one.
    _finished_caption(page, min_words, timeout_s=400)
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        g = _finished_caption(page, min_words)
        page.screenshot(path=artifact(f"layout-{label}-{name}.png"))
        assert_caption_readable(g, f"{label} at {name} {width}x{height}")

    page.set_viewport_size({"width": FULLSCREEN[0], "height": FULLSCREEN[1]})
    page.get_by_role("button", name="Fullscreen").click()
    page.get_by_role("button", name="Exit fullscreen").wait_for()
    g = _finished_caption(page, min_words)
    page.screenshot(path=artifact(f"layout-{label}-fullscreen.png"))
    assert g["fullscreen"] == "stage", "the stage should be what went fullscreen"
    assert_caption_readable(g, f"{label} in fullscreen")


@pytest.fixture(scope="module")
def server_40(
    chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serve(subprocess_env, tmp_path_factory.mktemp("serve"), tokens=40) as server:
        yield server


@pytest.fixture(scope="module")
def server_paragraph(
    chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # About a Moondream `long` caption: a paragraph of 150 words.
    with serve(subprocess_env, tmp_path_factory.mktemp("serve"), tokens=150) as server:
        yield server


def _one_frame_in_ten_minutes(page: Any) -> None:
    settings = '{"pacing": "interval", "interval": 600}'
    page.add_init_script(f"localStorage.setItem('camcap.settings.v1', '{settings}')")


def test_a_40_token_caption_is_whole_at_every_size(server_40: Server, page: Any, page_errors: list[str]) -> None:
    _one_frame_in_ten_minutes(page)
    start_camera(page, server_40)
    _check_every_size(page, "40-tokens", min_words=30)
    assert page_errors == []


def test_a_paragraph_caption_is_whole_at_every_size(
    server_paragraph: Server, page: Any, page_errors: list[str]
) -> None:
    _one_frame_in_ten_minutes(page)
    start_camera(page, server_paragraph)
    _check_every_size(page, "paragraph", min_words=110)
    assert page_errors == []
