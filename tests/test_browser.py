"""The page in a real browser: Debian Chromium with a fake camera, against a real `camcap serve`.

The camera is a generated clip (tests/fake_camera.py) whose every frame carries its number as a
barcode. Playwright records every WebSocket message the page sends and receives, so the test can
open each JPEG the page sent, read which camera frame it was, and follow it to its caption.
Chromium is Debian's (`apt-get install chromium`); without it these tests skip, unless
CAMCAP_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from camcap.server.messages import FRAME_MAGIC, InfoResponse, LimitsOut
from tests.fake_camera import HEIGHT, WIDTH, NotAClipFrame, decode_frame, write_y4m
from tests.page_browser import (
    ARTIFACTS,
    UI_TIMEOUT_MS,
    Server,
    find_chromium,
    finished_caption,
    launch_chromium,
    serve,
    wait_for,
)

pytestmark = pytest.mark.browser

MODEL = "random:blip-tiny"
TOKENS = 5  # every caption of the shared server is exactly this many tokens
# random:blip-tiny writes 20 tokens in tens of ms: less than the relay takes to pass two frames on.
# 200 tokens (~0.4 s) were once too few on a loaded CI machine; BLIP's text decoder has 512
# positions, prompt included, so this is about as long as its captions can be.
SLOW_TOKENS = 480


# --- the server --------------------------------------------------------------------------------
# `serve` (a real `camcap serve` with fixed-length captions), the Chromium flags and the time
# bounds are shared with the page tests (tests/page_browser.py).


@pytest.fixture(scope="module")
def camcap_server(
    chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The `camcap serve` most tests share. Asks for `chromium_path` first, so that without a
    browser the tests skip before paying for a server start. Short captions keep it quick on CPU."""
    with serve(subprocess_env, tmp_path_factory.mktemp("serve"), tokens=TOKENS) as server:
        yield server


@pytest.fixture(scope="module")
def slow_server(
    chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose captions take SLOW_TOKENS generation steps: long enough, once its first
    token is out, for two more frames to reach it while the model is busy."""
    with serve(subprocess_env, tmp_path_factory.mktemp("serve-slow"), tokens=SLOW_TOKENS) as server:
        yield server


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return find_chromium()


@pytest.fixture(scope="module")
def fake_camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("camera") / "clip.y4m")


@pytest.fixture(scope="module")
def chromium(chromium_path: str, fake_camera_clip: Path) -> Iterator[Any]:
    with launch_chromium(chromium_path, fake_camera_clip) as browser:
        yield browser


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh page in its own context (no settings remembered from another test)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def page_errors(page: Any) -> list[str]:
    """Uncaught exceptions in the page; tests assert it stays empty."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


# --- what crossed the WebSocket -------------------------------------------------------------------


@dataclass
class SentFrame:
    header: dict[str, Any]
    image: Image.Image
    payload: bytes

    @property
    def seq(self) -> int:
        return int(self.header["seq"])


def parse_frame(payload: bytes) -> SentFrame:
    """The wire format of camcap/server/messages.py, read independently of the server's code."""
    assert payload[:4] == FRAME_MAGIC, f"A binary message must start with {FRAME_MAGIC!r}, got {payload[:8]!r}"
    (length,) = struct.unpack(">I", payload[4:8])
    header = json.loads(payload[8 : 8 + length].decode("utf-8"))
    image = Image.open(io.BytesIO(payload[8 + length :]))
    image.load()
    assert image.format == "JPEG", f"Frames must be JPEG, got {image.format}"
    return SentFrame(header, image, payload)


@dataclass
class Wire:
    """Every WebSocket message the page sent or received, in the order the browser saw them."""

    messages: list[tuple[str, bytes | str]] = field(default_factory=list)

    @classmethod
    def attach(cls, page: Any) -> Wire:
        wire = cls()

        def on_socket(socket: Any) -> None:
            socket.on("framesent", lambda payload: wire.messages.append(("sent", payload)))
            socket.on("framereceived", lambda payload: wire.messages.append(("received", payload)))

        page.on("websocket", on_socket)
        return wire

    def frames(self) -> list[SentFrame]:
        return [
            parse_frame(payload) for kind, payload in self.messages if kind == "sent" and isinstance(payload, bytes)
        ]

    def sent_json(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for kind, payload in self.messages if kind == "sent" and isinstance(payload, str)]

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        events = [json.loads(payload) for kind, payload in self.messages if kind == "received"]
        return [event for event in events if type_ is None or event["type"] == type_]

    def events_before(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events received before `event` (compared by value)."""
        events = self.events()
        return events[: events.index(event)]


def expected_size(input_size: int) -> tuple[int, int]:
    """The fake camera's 640x480 with its short side brought down to input_size (never up)."""
    if input_size >= HEIGHT:
        return WIDTH, HEIGHT
    return round(WIDTH * input_size / HEIGHT), input_size


def save_artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def assert_live_pacing(wire: Wire) -> None:
    """Live pacing: a frame is sent only once the previous one was answered (caption, unchanged or
    error)."""
    answered: set[int] = set()
    previous: int | None = None
    for kind, payload in wire.messages:
        if kind == "received":
            event = json.loads(payload)
            if event["type"] in ("caption", "unchanged", "error") and event.get("seq") is not None:
                answered.add(event["seq"])
        elif isinstance(payload, bytes):
            seq = parse_frame(payload).seq
            assert previous is None or previous in answered, (
                f"Frame {seq} was sent while frame {previous} was in flight"
            )
            previous = seq


# Every text the caption overlay held, in order (a MutationObserver sees each token's update).
_RECORD_CAPTION_TEXTS = """
    window.__captionTexts = [];
    document.addEventListener("DOMContentLoaded", () => {
        const text = document.getElementById("caption-text");
        new MutationObserver(() => window.__captionTexts.push(text.textContent))
            .observe(text, { childList: true, characterData: true, subtree: true });
    });
"""


# --- tests ---------------------------------------------------------------------------------------


def test_live_captions_of_the_fake_camera(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    model = camcap_server.info["model"]
    wire = Wire.attach(page)
    page.add_init_script(_RECORD_CAPTION_TEXTS)
    page.goto(camcap_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    expect(page.locator("#model-name")).to_have_text(MODEL)
    expect(page.locator("#random-badge")).to_be_visible()
    expect(page.locator("#random-badge")).to_contain_text("captions are meaningless")

    # Keyboard only: the first Tab stop is the start button.
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Start camera")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Stop camera")).to_be_visible()

    decoded: dict[int, int] = {}  # seq -> clip frame number

    def clip_frames_seen() -> set[int]:
        for frame in wire.frames():
            if frame.seq not in decoded:
                try:
                    decoded[frame.seq] = decode_frame(frame.image)
                except NotAClipFrame:
                    frame.image.save(save_artifact(f"browser-bad-frame-{frame.seq}.jpg"))
                    raise
        return set(decoded.values())

    # Two different camera frames prove the page sends live pictures, not one frozen capture.
    wait_for(page, lambda: len(wire.events("caption")) >= 2 and len(clip_frames_seen()) >= 2, "two live captions")

    ready = wire.events("ready")
    assert len(ready) == 1, f"Expected one ready event, got {ready}"
    assert ready[0]["model"]["input_size"] == model["input_size"]

    frames = wire.frames()
    seqs = [frame.seq for frame in frames]
    assert seqs == sorted(set(seqs)), f"Frame seqs must increase: {seqs}"
    for frame in frames:
        assert set(frame.header) == {"seq", "captured_at", "sent_at"}, frame.header
        assert frame.header["captured_at"] <= frame.header["sent_at"], frame.header
        assert frame.image.size == expected_size(model["input_size"]), (
            f"Frame {frame.seq} is {frame.image.size}; the camera's 640x480 resized to a short side of "
            f"{model['input_size']} is {expected_size(model['input_size'])}"
        )

    assert_live_pacing(wire)

    # Every caption answers a frame the page sent, echoes its capture time, and was streamed:
    # its token events came before it and spell it.
    by_seq = {frame.seq: frame for frame in frames}
    for caption in wire.events("caption"):
        assert caption["seq"] in by_seq, f"Caption for unknown frame {caption['seq']}"
        assert caption["captured_at"] == by_seq[caption["seq"]].header["captured_at"]
        assert caption["random_weights"] is True
        assert caption["timings"]["tokens"] == TOKENS and caption["text"].strip()
        tokens = [e["text"] for e in wire.events_before(caption) if e["type"] == "token" and e["seq"] == caption["seq"]]
        assert tokens, f"Caption {caption['seq']} arrived without any token events"
        assert "".join(tokens) == caption["text"]

    # The overlay was written word by word: it showed a part of a caption before the whole.
    overlay = page.evaluate("() => window.__captionTexts")
    finals = {e["text"] for e in wire.events("caption")}
    partial = [text for text in overlay if text and text not in finals and any(f.startswith(text) for f in finals)]
    assert partial, f"The overlay never showed a caption being written; it showed {overlay}"

    # What the page shows is a caption the server sent for one of those frames. Read in one go
    # while the overlay holds a finished caption (between captions it shows a growing one).
    shown = finished_caption(page)
    final_texts = wait_for(
        page,
        lambda: {e["seq"]: e["text"] for e in wire.events("caption") if e["seq"] == shown["seq"]},
        f"the caption event of frame {shown['seq']}",
        timeout_s=10,
    )
    assert shown["text"] == final_texts[shown["seq"]]
    assert shown["live"] == shown["text"], "The ARIA live region must hold the finished caption"
    assert page.locator("#caption-live").get_attribute("aria-live") == "polite"

    duration = re.compile(r"^\d+(\.\d+)? m?s$")
    for stat in ("#stat-inference", "#stat-ttft", "#stat-age"):
        expect(page.locator(stat)).to_have_text(duration)
    expect(page.locator("#stat-skipped")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#stat-unchanged")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#notice")).to_be_hidden()

    page.screenshot(path=save_artifact("browser-live.png"))
    assert page_errors == []


def test_task_controls_send_config(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    tasks = camcap_server.info["model"]["tasks"]
    wire = Wire.attach(page)
    page.goto(camcap_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    wait_for(page, lambda: wire.sent_json(), "the first config message", timeout_s=10)
    assert wire.sent_json()[0] == {"type": "config", "task": "caption", "length": "normal"}

    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Caption length", exact=True).select_option("short")
    wait_for(page, lambda: len(wire.sent_json()) >= 2, "a config after choosing a length", timeout_s=10)
    assert wire.sent_json()[-1] == {"type": "config", "task": "caption", "length": "short"}

    query_option = page.locator("#task-select option[value=query]")
    if "query" not in tasks:
        expect(query_option).to_be_disabled()
        return
    page.get_by_label("Task", exact=True).select_option("query")
    page.get_by_label("Question", exact=True).fill("What colour is the wall?")
    page.get_by_label("Question", exact=True).press("Enter")
    wait_for(page, lambda: wire.sent_json()[-1].get("task") == "query", "a query config", timeout_s=10)
    assert wire.sent_json()[-1] == {"type": "config", "task": "query", "question": "What colour is the wall?"}
    assert wire.events("error") == []
    assert page_errors == []


def _reject_camera(error_name: str) -> str:
    return f"""
        navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException("refused by the test", "{error_name}"));
        navigator.mediaDevices.enumerateDevices = () => Promise.resolve([]);
    """


@pytest.mark.parametrize(
    ("error_name", "title"),
    [("NotAllowedError", "Camera access denied"), ("NotFoundError", "No camera found")],
    ids=["denied", "no-camera"],
)
def test_camera_failures_are_explained(
    camcap_server: Server, page: Any, page_errors: list[str], error_name: str, title: str
) -> None:
    from playwright.sync_api import expect

    page.add_init_script(_reject_camera(error_name))
    page.goto(camcap_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    page.get_by_role("button", name="Start camera").click()
    expect(page.locator("#notice-title")).to_have_text(title)
    expect(page.locator("#notice-text")).to_contain_text("press Start camera again")
    expect(page.get_by_role("button", name="Start camera")).to_be_enabled()
    assert page_errors == []


def _info_body(**fields: Any) -> str:
    limits = LimitsOut(max_frame_bytes=1, max_frame_pixels=1)
    return InfoResponse(version="test", spec=MODEL, limits=limits, **fields).model_dump_json()


def test_model_loading_and_model_error_are_shown(camcap_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    body = {"value": _info_body(status="loading")}
    page.route(
        "**/v1/info", lambda route: route.fulfill(status=503, content_type="application/json", body=body["value"])
    )
    page.goto(camcap_server.url)
    expect(page.locator("#notice-title")).to_have_text("Loading model…")
    expect(page.locator("#notice-text")).to_contain_text(MODEL)
    expect(page.locator("#connection-pill")).to_have_text("Loading model…")

    message = "Could not load the model: out of memory.\nTry --device cpu."
    body["value"] = _info_body(status="error", error=message)
    expect(page.locator("#notice-title")).to_have_text("Model error")
    assert page.locator("#notice-text").text_content() == message  # verbatim


def test_unreachable_server_is_retried(camcap_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    page.route("**/v1/info", lambda route: route.abort("connectionrefused"))
    page.goto(camcap_server.url)
    expect(page.locator("#notice-title")).to_have_text("Server unreachable")
    # The attempt number grows as the page tries again. Read, not expected to be 1: on a loaded
    # machine the first retry may already be past when the pill is first read.
    attempt = re.compile(r"retry (\d+) in \d+ s")
    pill = page.locator("#connection-pill")
    expect(pill).to_contain_text(attempt)
    first = int(attempt.search(pill.text_content() or "").group(1))  # type: ignore[union-attr]
    later = lambda: (found := attempt.search(pill.text_content() or "")) and int(found.group(1)) > first  # noqa: E731
    wait_for(page, later, "the page to try again", timeout_s=30)

    page.unroute("**/v1/info")
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    expect(page.locator("#notice-title")).to_have_text("Camera is off")


def test_lost_stream_reconnects_and_captions_resume(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    """The socket drops while a frame is in flight; the page reconnects and captions resume.

    The lost frame is never answered: a page that kept waiting for it would stall.
    """
    from playwright.sync_api import expect

    captions_per_connection: list[list[dict[str, Any]]] = []

    def relay(route: Any) -> None:
        server = route.connect_to_server()
        captions: list[dict[str, Any]] = []
        first = not captions_per_connection
        captions_per_connection.append(captions)

        def to_page(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message)["type"] == "caption":
                captions.append(json.loads(message))
            route.send(message)

        def to_server(message: str | bytes) -> None:
            if first and captions and isinstance(message, bytes):
                # A frame after the first caption: drop it and the connection with it.
                route.close(code=1011, reason="closed by the test with a frame in flight")
                return
            server.send(message)

        server.on_message(to_page)
        route.on_message(to_server)

    page.route_web_socket(re.compile(r"/v1/stream$"), relay)
    page.goto(camcap_server.url)
    page.get_by_role("button", name="Start camera").click()
    wait_for(page, lambda: len(captions_per_connection) >= 2, "the page to reconnect")
    # Well under the page's 120 s stall guard: a page waiting on the lost frame fails here.
    wait_for(page, lambda: captions_per_connection[1], "a caption on the new connection", timeout_s=60)
    expect(page.locator("#connection-pill")).to_have_text("Live")
    expect(page.locator("#notice")).to_be_hidden()
    assert page_errors == []


# A camera that films a still scene: a canvas that never changes, repainted so frames keep coming.
_STILL_CAMERA = """
    navigator.mediaDevices.getUserMedia = async () => {
        const canvas = document.createElement("canvas");
        canvas.width = 640;
        canvas.height = 480;
        const context = canvas.getContext("2d");
        const paint = () => {
            context.fillStyle = "#4a6d8c";
            context.fillRect(0, 0, 640, 480);
            context.fillStyle = "#e0c070";
            context.fillRect(120, 200, 200, 150);
            context.fillStyle = "#202020";
            context.beginPath();
            context.arc(460, 160, 70, 0, 2 * Math.PI);
            context.fill();
        };
        paint();
        setInterval(paint, 50);
        return canvas.captureStream(20);
    };
"""


def test_a_still_scene_is_answered_unchanged_and_the_page_keeps_going(
    camcap_server: Server, page: Any, page_errors: list[str]
) -> None:
    """The server answers frames of a scene that has not changed with `unchanged`, not a caption.

    The page must take that as the answer to its frame: keep the caption up, count it, and send
    the next frame. A page that waited for a caption instead would stall after the first one.
    """
    from playwright.sync_api import expect

    page.add_init_script(_STILL_CAMERA)
    wire = Wire.attach(page)
    page.goto(camcap_server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    page.get_by_role("button", name="Start camera").click()
    wait_for(page, lambda: len(wire.events("unchanged")) >= 3, "three unchanged answers in a row")

    captions = wire.events("caption")
    assert len(captions) == 1, f"A still scene is captioned once, got {len(captions)} captions"
    for event in wire.events("unchanged"):
        assert event["reference_seq"] == captions[0]["seq"]
        assert 0 <= event["difference"] < 0.2, event
    assert_live_pacing(wire)
    expect(page.locator("#caption-text")).to_have_text(captions[0]["text"])
    expect(page.locator("#stat-unchanged")).not_to_have_text("0")
    assert page_errors == []


# --- the controls the README promises ----------------------------------------------------------


def _open(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    page.goto(server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")


def _settings(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Settings").click()
    expect(page.locator("#settings")).to_be_visible()


def _set_number(page: Any, label: str, value: str) -> None:
    field_ = page.get_by_label(label, exact=True)
    field_.fill(value)
    field_.press("Tab")  # "change" fires when the field loses focus


def _sent_at_gaps(frames: list[SentFrame]) -> list[float]:
    sent = [frame.header["sent_at"] for frame in frames]
    return [later - earlier for earlier, later in itertools.pairwise(sent)]


def test_mirror_flips_the_preview_and_never_the_frames_sent(
    camcap_server: Server, page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    wire = Wire.attach(page)
    _open(page, camcap_server)
    mirror = page.get_by_role("button", name="Mirror")
    video = page.locator("#video")
    transform = "() => getComputedStyle(document.getElementById('video')).transform"
    page.get_by_role("button", name="Start camera").click()
    # Mirrored by default; then off, then on again. Frames captured in each state reach the server.
    for toggles, pressed in enumerate(("true", "false", "true")):
        if toggles:
            mirror.click()
        expect(mirror).to_have_attribute("aria-pressed", pressed)
        if pressed == "true":
            expect(video).to_have_class(re.compile(r"\bmirrored\b"))
            assert page.evaluate(transform) == "matrix(-1, 0, 0, 1, 0, 0)"
        else:
            expect(video).not_to_have_class(re.compile(r"\bmirrored\b"))
            assert page.evaluate(transform) == "none"
        sent = len(wire.frames())
        # The frame in flight at the toggle may predate it; the one after it cannot.
        wait_for(page, lambda sent=sent: len(wire.frames()) >= sent + 2, f"two frames with mirror {pressed}")
    for frame in wire.frames():
        try:
            decode_frame(frame.image)  # raises NotAClipFrame for a mirrored frame
        except NotAClipFrame:
            frame.image.save(save_artifact(f"browser-mirrored-frame-{frame.seq}.jpg"))
            raise
    assert page_errors == []


def test_escape_closes_settings_and_gives_focus_back(camcap_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    _open(page, camcap_server)
    _settings(page)
    expect(page.get_by_label("Camera", exact=True)).to_be_focused()
    page.keyboard.press("Tab")  # anywhere in the panel
    page.keyboard.press("Escape")
    expect(page.locator("#settings")).to_be_hidden()
    settings_button = page.get_by_role("button", name="Settings")
    expect(settings_button).to_be_focused()
    expect(settings_button).to_have_attribute("aria-expanded", "false")


def test_fullscreen_holds_the_video_the_caption_and_the_controls(camcap_server: Server, page: Any) -> None:
    from playwright.sync_api import expect

    _open(page, camcap_server)
    button = page.locator("#fullscreen-btn")
    expect(button).to_be_enabled()
    button.click()
    shown = "() => document.fullscreenElement?.id ?? null"
    wait_for(page, lambda: page.evaluate(shown) == "stage", "the stage to go fullscreen", timeout_s=10)
    for part in ("#video", "#caption", "#start-btn", "#settings-btn", "#stats"):
        assert page.evaluate(f"() => document.fullscreenElement.contains(document.querySelector('{part}'))"), part
    expect(button).to_have_text("Exit fullscreen")
    expect(button).to_have_attribute("aria-pressed", "true")
    button.click()
    wait_for(page, lambda: page.evaluate(shown) is None, "fullscreen to end", timeout_s=10)
    expect(button).to_have_text("Fullscreen")
    expect(button).to_have_attribute("aria-pressed", "false")


def test_settings_are_remembered_across_a_reload(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    _open(page, camcap_server)
    _settings(page)
    page.get_by_label("Caption length", exact=True).select_option("short")
    page.get_by_label("Send frames", exact=True).select_option("interval")
    _set_number(page, "Every (s)", "7")
    page.evaluate(
        """() => { const q = document.getElementById("quality-input");
                   q.value = "0.5"; q.dispatchEvent(new Event("input")); }"""
    )
    page.get_by_role("button", name="Mirror").click()
    expect(page.get_by_role("button", name="Mirror")).to_have_attribute("aria-pressed", "false")

    wire = Wire.attach(page)
    page.reload()
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    expect(page.locator("#length-select")).to_have_value("short")
    expect(page.locator("#pacing-select")).to_have_value("interval")
    expect(page.locator("#interval-input")).to_have_value("7")
    expect(page.locator("#quality-input")).to_have_value("0.5")
    expect(page.locator("#quality-output")).to_have_text("0.50")
    expect(page.get_by_role("button", name="Mirror")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#video")).not_to_have_class(re.compile(r"\bmirrored\b"))
    # And they are what the page uses: the remembered task is the first config it sends.
    wait_for(page, lambda: wire.sent_json(), "the first config message", timeout_s=10)
    assert wire.sent_json()[0] == {"type": "config", "task": "caption", "length": "short"}
    assert page_errors == []


def test_stop_removes_the_caption_and_sends_no_more_frames(
    camcap_server: Server, page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    wire = Wire.attach(page)
    _open(page, camcap_server)
    page.get_by_role("button", name="Start camera").click()
    wait_for(page, lambda: wire.events("caption"), "a caption")
    expect(page.locator("#caption")).to_be_visible()
    page.get_by_role("button", name="Stop camera").click()
    expect(page.locator("#caption")).to_be_hidden()
    expect(page.locator("#caption-text")).to_have_text("")
    expect(page.locator("#notice-title")).to_have_text("Camera is off")
    # A frame in flight at the stop is still answered; its caption must not come back on screen.
    sent = {frame.seq for frame in wire.frames()}
    answered = lambda: {e["seq"] for e in wire.events() if e["type"] in ("caption", "unchanged", "error")}  # noqa: E731
    wait_for(page, lambda: sent <= answered(), "the answer to every frame sent before the stop")
    expect(page.locator("#caption")).to_be_hidden()
    assert {frame.seq for frame in wire.frames()} == sent, "A frame was sent after Stop"
    assert page_errors == []


def test_minimum_gap_spaces_the_frames_of_live_pacing(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    """A still scene is answered `unchanged` in milliseconds, so only the gap holds the page back
    (without it, frames would go out about every 0.1 s)."""
    page.add_init_script(_STILL_CAMERA)
    wire = Wire.attach(page)
    _open(page, camcap_server)
    _settings(page)
    _set_number(page, "Minimum gap (s)", "1")
    page.get_by_role("button", name="Start camera").click()
    wait_for(page, lambda: len(wire.frames()) >= 4, "four frames")
    assert len(wire.events("unchanged")) >= 2, "the still scene was captioned over and over"
    gaps = _sent_at_gaps(wire.frames())
    # A lower bound only: the page never sends sooner than the gap after its previous frame.
    assert min(gaps) >= 1000 - 1, f"Frames were sent {gaps} ms apart; the minimum gap is 1000 ms"
    assert_live_pacing(wire)  # and still one frame in flight at a time
    assert page_errors == []


def test_fixed_interval_sends_whatever_the_model_does_and_the_page_counts_skipped_frames(
    slow_server: Server, page: Any, page_errors: list[str]
) -> None:
    """Every 0.2 s a frame, answered or not; frames that reach a busy model wait in its one slot,
    the newest replacing the older, and the page adds up the `skipped` counts it is told.

    The test relays the socket: it passes the first frame on, holds the next two until the model
    has written the first frame's first token (so it is busy for SLOW_TOKENS - 1 more steps),
    sends both at once, and holds every later frame. So exactly one frame is skipped. (The first
    frame itself is held until the other two are there.)
    """
    from playwright.sync_api import expect

    held: list[bytes] = []
    sent: list[SentFrame] = []  # every frame the page sent, passed on or not
    events: list[dict[str, Any]] = []  # every event the server sent
    flow: dict[str, Any] = {"first": None, "flushed": False}

    def relay(route: Any) -> None:
        server = route.connect_to_server()

        def to_page(message: str | bytes) -> None:
            event = json.loads(message)
            events.append(event)
            if event["type"] == "token" and event["seq"] == flow["first"] and not flow["flushed"] and len(held) == 2:
                flow["flushed"] = True
                server.send(held[0])
                server.send(held[1])
            route.send(message)

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str):
                server.send(message)
                return
            sent.append(parse_frame(message))
            if flow["first"] is None:
                flow["first"], flow["first_frame"] = sent[-1].seq, message
            elif len(held) < 2:
                held.append(message)
                if len(held) == 2:
                    # Only now the first frame goes on: on a fast machine its caption could
                    # otherwise be finished before the other two were even sent.
                    server.send(flow["first_frame"])
            # Later frames are dropped: with nothing more to caption, the counts settle.

        server.on_message(to_page)
        route.on_message(to_server)

    def captions() -> list[dict[str, Any]]:
        return [event for event in events if event["type"] == "caption"]

    page.route_web_socket(re.compile(r"/v1/stream$"), relay)
    _open(page, slow_server)
    _settings(page)
    page.get_by_label("Send frames", exact=True).select_option("interval")
    _set_number(page, "Every (s)", "0.2")
    page.get_by_role("button", name="Start camera").click()
    # Interval pacing does not wait for answers: three frames go out before the first caption.
    wait_for(page, lambda: len(held) == 2, "three frames sent without waiting for an answer")
    wait_for(page, lambda: len(captions()) >= 2, "the captions of the first and the third frame")
    first, third = captions()[:2]
    assert (first["seq"], first["skipped"]) == (flow["first"], 0)
    assert (third["seq"], third["skipped"]) == (parse_frame(held[1]).seq, 1), "the second frame was replaced"
    expect(page.locator("#stat-skipped")).to_have_text("1")
    gaps = _sent_at_gaps(sent)
    assert min(gaps) >= 200 - 1, f"Frames were sent {gaps} ms apart; the interval is 200 ms"
    assert page_errors == []
