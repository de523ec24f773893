"""What a browser does with a real `camcap serve` on loopback, as `camcap serve` starts it for the
person at the keyboard: with an access token made at start, handed over in the URL it opens.

- Every request a page of the server makes stays on the machine (`/docs` and `/redoc` used to load
  scripts and a favicon from CDNs).
- The token opens the page, the page's WebSocket works with the cookie it leaves, and the token
  leaves the address bar (and so the browser's history).
- Without the token, other local processes are refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.live_server import free_port, stop_process
from tests.page_browser import CHROMIUM_FLAGS, MODEL, chromium_path  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser

START_TIMEOUT_S = 120
UI_TIMEOUT_MS = 30_000


@dataclass
class TokenServer:
    process: subprocess.Popen[bytes]
    port: int
    url: str  # the URL `camcap serve` printed, with ?token=

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def token_server(
    chromium_path: str,  # noqa: F811  (asked first: without a browser, skip before starting a server)
    subprocess_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TokenServer]:
    env = {**subprocess_env, "CAMCAP_MAX_NEW_TOKENS": "3"}
    env.pop("CAMCAP_LOOPBACK_TOKEN", None)  # as `camcap serve` runs for a person: a token on loopback too
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "camcap", "serve", "--model", MODEL, "--device", "cpu", "--port", str(port),
               "--no-open"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := re.search(r"at (http://127\.0\.0\.1:\d+/\S*)", log.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`camcap serve` printed no URL:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        server = TokenServer(process, port, found.group(1))
        while not _answers(server.base + "/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`camcap serve` did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop_process(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS, timeout=60_000)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def test_the_token_is_made_and_required_on_loopback(token_server):
    assert "?token=" in token_server.url
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(token_server.base + "/v1/info", timeout=5)
    assert refused.value.code == 401


def test_the_printed_url_opens_the_page_and_the_token_leaves_the_address_bar(token_server, page):
    from playwright.sync_api import expect

    page.goto(token_server.url)
    expect(page.locator("#connection-pill")).to_have_text(re.compile("Connected|Loading model"))
    expect(page.locator("#connection-pill")).to_have_text("Connected", timeout=START_TIMEOUT_S * 1000)
    assert "token" not in page.url
    assert "token" not in page.evaluate("window.location.href")
    page.reload()  # the cookie alone is enough from now on
    expect(page.locator("#connection-pill")).to_have_text("Connected")


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc"])
def test_no_page_of_the_server_makes_a_request_off_the_machine(token_server, page, path):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(token_server.url)  # sets the cookie
    page.goto(token_server.base + path)
    page.wait_for_load_state("networkidle")
    elsewhere = [url for url in requested if urlsplit(url).hostname not in ("127.0.0.1", "localhost")]
    assert requested and not elsewhere, f"{path} asked for {elsewhere}"


def test_the_api_document_is_still_served(token_server):
    token = token_server.url.split("token=", 1)[1]
    request = urllib.request.Request(token_server.base + "/openapi.json", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200 and b'"/v1/caption"' in answer.read()
