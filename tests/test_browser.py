"""The page in a real browser: Debian Chromium with a fake camera, against a real `camcap serve`.

The camera is a generated clip (tests/fake_camera.py) whose every frame carries its number as a
barcode. Playwright records every WebSocket message the page sends and receives, so the test can
open each JPEG the page sent, read which camera frame it was, and follow it to its caption.
Chromium is Debian's (`apt-get install chromium`); without it these tests skip, unless
CAMCAP_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from camcap.server.messages import FRAME_MAGIC, InfoResponse, LimitsOut
from tests.fake_camera import HEIGHT, WIDTH, NotAClipFrame, decode_frame, write_y4m
from tests.live_server import free_port, stop_process

pytestmark = pytest.mark.browser

MODEL = "random:blip-tiny"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Bounds, not expectations: generous because 2 shared CPU cores build the model and run Chromium.
SERVER_START_TIMEOUT_S = 300
CAPTIONS_TIMEOUT_S = 120
UI_TIMEOUT_MS = 30_000

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --- the server --------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:  # e.g. 503 while the model loads: the body still says why
        return error.code, json.loads(error.read() or b"null")


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"`camcap serve` exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            health_status, _ = _get_json(server.url + "healthz")
            if health_status == 200:
                _, info = _get_json(server.url + "v1/info")
                if info["status"] == "ready":
                    server.info = info
                    return
                if info["status"] == "error":
                    pytest.fail(f"The model failed to load: {info.get('error')}\n{server.log_tail()}")
        except (OSError, ValueError):
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"`camcap serve` was not ready within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def camcap_server(
    chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real `camcap serve` on a free port. Asks for `chromium_path` first, so that without a
    browser the tests skip before paying for a server start."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [
        sys.executable, "-m", "camcap", "serve",
        "--model", MODEL, "--device", "cpu",
        "--host", "127.0.0.1", "--port", str(port), "--no-open",
    ]  # fmt: skip
    # Short captions keep the loop quick on CPU. Set through the environment (Settings reads
    # CAMCAP_*), which works whichever commands offer a --max-new-tokens flag.
    env = {**subprocess_env, "CAMCAP_MAX_NEW_TOKENS": "5"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}/", process=process, log_path=log_path)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        stop_process(process, timeout=15)


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = os.environ.get("CAMCAP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    if not Path(path).exists():
        problem = f"Chromium not found at {path}: `apt-get install -y chromium` (or set CAMCAP_CHROMIUM)."
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "The playwright package is missing: `pip install -e .[test]`."
    if problem:
        if os.environ.get("CAMCAP_REQUIRE_BROWSER") == "1":
            pytest.fail(problem + " (CAMCAP_REQUIRE_BROWSER=1)")
        pytest.skip(problem)
    return path


@pytest.fixture(scope="module")
def fake_camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("camera") / "clip.y4m")


@pytest.fixture(scope="module")
def chromium(chromium_path: str, fake_camera_clip: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    fake_camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={fake_camera_clip}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_FLAGS + fake_camera, timeout=60_000
        )
        yield browser
        browser.close()


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


def wait_for(page: Any, condition: Callable[[], Any], what: str, timeout_s: float = CAPTIONS_TIMEOUT_S) -> Any:
    """Poll `condition` while letting Playwright deliver events; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        page.wait_for_timeout(200)
    pytest.fail(f"Timed out after {timeout_s} s waiting for {what}.")


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


# --- tests ---------------------------------------------------------------------------------------


def test_live_captions_of_the_fake_camera(camcap_server: Server, page: Any, page_errors: list[str]) -> None:
    from playwright.sync_api import expect

    model = camcap_server.info["model"]
    wire = Wire.attach(page)
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

    # Every caption answers a frame the page sent, echoes its capture time, and was streamed.
    by_seq = {frame.seq: frame for frame in frames}
    token_seqs = {event["seq"] for event in wire.events("token")}
    for caption in wire.events("caption"):
        assert caption["seq"] in by_seq, f"Caption for unknown frame {caption['seq']}"
        assert caption["captured_at"] == by_seq[caption["seq"]].header["captured_at"]
        assert caption["random_weights"] is True
        if caption["text"]:
            assert caption["seq"] in token_seqs, f"Caption {caption['seq']} arrived without any token events"

    # What the page shows is a caption the server sent for one of those frames. Read in one go
    # while the overlay holds a finished caption (between captions it shows a growing one).
    snapshot = """() => {
        const box = document.getElementById("caption");
        return box.dataset.streaming === "false" && {
            seq: Number(box.dataset.seq),
            text: document.getElementById("caption-text").textContent,
            live: document.getElementById("caption-live").textContent,
        };
    }"""
    shown = wait_for(page, lambda: page.evaluate(snapshot), "a finished caption in the overlay", timeout_s=30)
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
    expect(page.locator("#connection-pill")).to_contain_text(re.compile(r"retry 1 in \d+ s"))
    expect(page.locator("#connection-pill")).to_contain_text("retry 2 in")  # it did try again

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
