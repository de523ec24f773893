"""Helpers for the page's browser tests (tests/test_page_*.py): a real `camcap serve`, Debian's
Chromium with the fake camera, and a page on it.

Test modules import the fixtures they use by name (pytest finds fixtures imported into a module).
Like tests/test_browser.py, these skip without Chromium unless CAMCAP_REQUIRE_BROWSER=1 (CI),
where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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

from tests.fake_camera import write_y4m
from tests.live_server import free_port, stop_process

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


@contextlib.contextmanager
def serve(
    env: dict[str, str], log_dir: Path, *, tokens: int | None = 5, model: str = MODEL, args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """A real `camcap serve` on a free port whose captions are exactly `tokens` tokens long
    (`None`: as long as the model makes them, e.g. demo:shapes's scene descriptions)."""
    port = free_port()
    log_path = log_dir / f"serve-{port}.log"
    command = [
        sys.executable, "-m", "camcap", "serve",
        "--model", model, "--device", "cpu",
        "--host", "127.0.0.1", "--port", str(port), "--no-open", *args,
    ]  # fmt: skip
    # Fixed-length captions (min == max), so a test knows how long its caption is.
    if tokens is not None:
        env = {**env, "CAMCAP_MAX_NEW_TOKENS": str(tokens), "CAMCAP_MIN_NEW_TOKENS": str(tokens)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}/", process=process, log_path=log_path)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        stop_process(process, timeout=15)


def find_chromium() -> str:
    """Debian's Chromium and the playwright package, or a skip (a failure under
    CAMCAP_REQUIRE_BROWSER=1, as in CI). Every module's browser tests call it."""
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


@contextlib.contextmanager
def launch_chromium(chromium_path: str, clip: Path) -> Iterator[Any]:
    """Headless Chromium whose camera is the fake one playing `clip` (a .y4m)."""
    from playwright.sync_api import sync_playwright

    fake_camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_FLAGS + fake_camera, timeout=60_000
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return find_chromium()


@pytest.fixture(scope="module")
def camcap_server(
    chromium_path: str, subprocess_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real `camcap serve` with 5-token captions. Asks for `chromium_path` first, so that without
    a browser the tests skip before paying for a server start."""
    with serve(subprocess_env, tmp_path_factory.mktemp("serve")) as server:
        yield server


@pytest.fixture(scope="module")
def chromium(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with launch_chromium(chromium_path, write_y4m(tmp_path_factory.mktemp("camera") / "clip.y4m")) as browser:
        yield browser


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no settings remembered from another test)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 720}, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


@pytest.fixture
def page_errors(page: Any) -> list[str]:
    """Uncaught exceptions in the page; tests assert it stays empty."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def wait_for(page: Any, condition: Callable[[], Any], what: str, timeout_s: float = CAPTIONS_TIMEOUT_S) -> Any:
    """Poll `condition` while letting Playwright deliver events; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        page.wait_for_timeout(200)
    pytest.fail(f"Timed out after {timeout_s} s waiting for {what}.")


def finished_caption(page: Any, timeout_s: float = 30) -> dict[str, Any]:
    """The overlay's caption once it is finished, read in one go: its frame `seq`, its `text` and
    what the ARIA live region says (`live`). Between captions the overlay shows a growing one."""
    snapshot = """() => {
        const box = document.getElementById("caption");
        return box.dataset.streaming === "false" && {
            seq: Number(box.dataset.seq),
            text: document.getElementById("caption-text").textContent,
            live: document.getElementById("caption-live").textContent,
        };
    }"""
    return wait_for(page, lambda: page.evaluate(snapshot), "a finished caption in the overlay", timeout_s=timeout_s)


def artifact(name: str) -> Path:
    """A path under test-artifacts/ (gitignored): screenshots and files kept for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def start_camera(page: Any, server: Server) -> None:
    """Open the page on `server` and start the fake camera."""
    from playwright.sync_api import expect

    page.goto(server.url)
    expect(page.locator("#connection-pill")).to_have_text("Connected")
    page.get_by_role("button", name="Start camera").click()
    expect(page.get_by_role("button", name="Stop camera")).to_be_visible()
