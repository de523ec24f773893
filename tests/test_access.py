"""Access control wired into the real app and the real `camcap serve`: token, Origin, Host, HTTPS.

The rules are tested on their own (test_security.py, test_tokens.py, test_addresses.py); here the
question is whether camcap's own app and command apply them.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from camcap.config import Settings
from camcap.errors import AccessConfigError
from camcap.server.app import create_app
from camcap.server.security import TOKEN_COOKIE
from tests.fakes import FakeCaptioner
from tests.live_server import free_port, stop_process
from tests.test_browser import find_chromium
from tests.test_server import jpeg, recv, wait_ready

TOKEN = "test-token-0123456789abcdef"
MODEL = "random:blip-tiny"
SERVE_START_TIMEOUT_S = 120


@contextmanager
def app_client(fake: FakeCaptioner | None = None, **settings: Any) -> Iterator[TestClient]:
    settings.setdefault("allow_hosts", ["testserver"])  # TestClient's Host
    app = create_app(Settings(model="fake", **settings), captioner=fake or FakeCaptioner())
    with TestClient(app) as client:
        yield client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the app: who may bind where ------------------------------------------------------------------


def test_listening_beyond_loopback_without_a_token_is_refused():
    with pytest.raises(AccessConfigError, match="needs an access token") as refused:
        create_app(Settings(model="fake", host="0.0.0.0"), captioner=FakeCaptioner())
    assert "--token" in str(refused.value) and "127.0.0.1" in str(refused.value)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"token": "short"}, "at least 16 characters"),
        ({"token": "has spaces in it, sixteen+"}, "at least 16 characters"),
        ({"allow_origins": ["not an origin"]}, "is not a web origin"),
        ({"allow_hosts": ["https://with.a.scheme"]}, "is not a host name"),
    ],
)
def test_unusable_access_settings_fail_at_startup_saying_why(settings, words):
    with pytest.raises(AccessConfigError, match=words):
        create_app(Settings(model="fake", **settings), captioner=FakeCaptioner())


def test_the_token_stays_out_of_the_settings_repr():
    assert TOKEN not in repr(Settings(token=TOKEN)) and TOKEN not in str(Settings(token=TOKEN).model_dump())


# --- the token ----------------------------------------------------------------------------------


@pytest.fixture
def token_client() -> Iterator[TestClient]:
    fake = FakeCaptioner()
    with app_client(fake, host="0.0.0.0", token=TOKEN, https=False) as client:
        client.fake = fake  # type: ignore[attr-defined]
        wait_ready_with_token(client)
        yield client


def wait_ready_with_token(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while client.get("/v1/info", headers=bearer()).json()["status"] == "loading":
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.01)


def test_without_the_token_every_route_is_401_but_healthz_says_only_ok(token_client):
    for method, path in [("GET", "/v1/info"), ("GET", "/"), ("GET", "/static/app.js"), ("POST", "/v1/caption")]:
        response = token_client.request(method, path)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["code"] == "token_required"
        assert "printed" in response.json()["detail"]
    assert token_client.get("/healthz").json() == {"status": "ok"}
    wrong = token_client.get("/v1/info", headers=bearer("wrong-token-0123456789abcdef"))
    assert (wrong.status_code, wrong.json()["code"]) == (401, "token_invalid")


def test_without_the_token_no_frame_reaches_the_model(token_client):
    response = token_client.post("/v1/caption", files={"image": ("f.jpg", jpeg(), "image/jpeg")})
    assert response.status_code == 401
    assert token_client.fake.seen == []  # type: ignore[attr-defined]


def test_with_the_token_the_api_answers(token_client):
    assert token_client.get("/v1/info", headers=bearer()).json()["status"] == "ready"
    response = token_client.post("/v1/caption", files={"image": ("f.jpg", jpeg(), "image/jpeg")}, headers=bearer())
    assert response.status_code == 200, response.text


def test_a_websocket_without_the_token_is_closed_with_1008(token_client):
    with pytest.raises(WebSocketDisconnect) as closed, token_client.websocket_connect("/v1/stream"):
        pass
    assert closed.value.code == 1008
    with token_client.websocket_connect("/v1/stream", headers=bearer()) as ws:
        assert recv(ws)["type"] == "ready"


def test_the_page_opened_with_the_token_url_gets_a_cookie_its_websocket_uses(token_client):
    page = token_client.get(f"/?token={TOKEN}")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert page.headers["referrer-policy"] == "no-referrer"
    # Sent as a browser would: the cookie alone, no header, no query.
    headers = {"Cookie": f"{TOKEN_COOKIE}={TOKEN}"}
    assert token_client.get("/v1/info", headers=headers).status_code == 200
    with token_client.websocket_connect("/v1/stream", headers=headers) as ws:
        assert recv(ws)["type"] == "ready"


def test_a_token_given_on_loopback_is_required_there_too():
    with app_client(token=TOKEN) as client:
        assert client.get("/v1/info").status_code == 401
        assert client.get("/v1/info", headers=bearer()).status_code == 200


# --- Origin and Host ----------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    fake = FakeCaptioner()
    with app_client(fake) as client:
        client.fake = fake  # type: ignore[attr-defined]
        wait_ready(client)
        yield client


def test_a_page_on_another_site_cannot_caption_or_read(client):
    evil = {"Origin": "https://evil.example"}
    response = client.post("/v1/caption", files={"image": ("f.jpg", jpeg(), "image/jpeg")}, headers=evil)
    assert (response.status_code, response.json()["code"]) == (403, "origin_not_allowed")
    assert "--allow-origin https://evil.example" in response.json()["detail"]
    assert client.get("/v1/info", headers=evil).status_code == 403
    assert client.fake.seen == []  # type: ignore[attr-defined]


def test_a_websocket_from_another_site_is_closed_with_1008(client):
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/v1/stream", headers={"Origin": "http://evil.example:8000"}),
    ):
        pass
    assert closed.value.code == 1008


def test_camcaps_own_page_and_scripts_without_origin_pass(client):
    assert client.get("/v1/info", headers={"Origin": "http://testserver"}).status_code == 200
    with client.websocket_connect("/v1/stream", headers={"Origin": "http://testserver"}) as ws:
        assert recv(ws)["type"] == "ready"
    assert client.get("/v1/info").status_code == 200  # curl, Python: no Origin at all


def test_an_allowed_origin_may_call():
    with app_client(allow_origins=["https://dashboard.example"]) as client:
        wait_ready(client)
        assert client.get("/v1/info", headers={"Origin": "https://dashboard.example"}).status_code == 200
        assert client.get("/v1/info", headers={"Origin": "https://other.example"}).status_code == 403


def test_a_rebound_domain_name_is_refused_by_the_host_check(client):
    response = client.get("/v1/info", headers={"Host": "attacker.example:8000"})
    assert (response.status_code, response.json()["code"]) == (400, "host_not_allowed")
    assert client.get("/v1/info", headers={"Host": "127.0.0.1:8000"}).status_code == 200


# --- `camcap serve` -------------------------------------------------------------------------------


@pytest.fixture
def serve_env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    # Its own config folder, so the certificate is made here and never in the user's ~/.config.
    env = {**subprocess_env, "XDG_CONFIG_HOME": str(tmp_path / "config"), "CAMCAP_MAX_NEW_TOKENS": "3"}
    for name in ("CAMCAP_TOKEN", "CAMCAP_HOST", "CAMCAP_HTTPS", "CAMCAP_MODEL"):
        env.pop(name, None)
    return env


class Serve:
    """A `camcap serve` subprocess whose stderr is collected in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "camcap", "serve", "--model", MODEL, "--no-open", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while (found := re.search(pattern, self.output())) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`camcap serve` never printed {pattern!r}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        return found

    def stop(self) -> None:
        stop_process(self.process)


@contextmanager
def serve(args: list[str], env: dict[str, str], log: Path) -> Iterator[Serve]:
    server = Serve(args, env, log)
    try:
        yield server
    finally:
        server.stop()


def tls_context(cert: Path) -> ssl.SSLContext:
    """Trust exactly this certificate (and check the host name against it)."""
    return ssl.create_default_context(cafile=str(cert))


def get(url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_answering(url: str, context: ssl.SSLContext | None, server: Serve) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while True:
        try:
            get(url, context)
            return
        except (OSError, ssl.SSLError):
            if server.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`camcap serve` did not answer {url}:\n{server.output()[-3000:]}")
            time.sleep(0.2)


def test_serve_beyond_loopback_prints_a_generated_token_and_serves_https_with_it(serve_env, tmp_path):
    port = free_port()
    with serve(["--host", "0.0.0.0", "--port", str(port)], serve_env, tmp_path / "serve.log") as server:
        found = server.wait_for_output(r"at https://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{43}) ")
        assert int(found.group(1)) == port
        token = found.group(2)
        output = server.output()
        assert "needs an access token; a new one was made" in output
        fingerprint = re.search(r"SHA-256 fingerprint ([0-9A-F:]{95})", output)
        assert fingerprint is not None, output
        cert = tmp_path / "config" / "camcap" / "tls" / "cert.pem"
        context = tls_context(cert)
        base = f"https://127.0.0.1:{port}"
        wait_answering(base + "/healthz", context, server)

        assert get(base + "/v1/info", context)[0] == 401
        status, body = get(base + "/v1/info", context, {"Authorization": f"Bearer {token}"})
        assert status == 200, body
        # The certificate served is the one whose fingerprint was printed.
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            served = tls.getpeercert(binary_form=True)
        assert served is not None
        assert hashlib.sha256(served).digest().hex(":").upper() == fingerprint.group(1)
        # The token never reaches the access log, even when sent in the URL.
        get(f"{base}/v1/info?token={token}", context)
        assert token not in server.output().split("(Ctrl+C to stop)", 1)[1]


def test_serve_https_on_loopback_uses_the_certificate_it_made(serve_env, tmp_path):
    port = free_port()
    with serve(["--https", "--port", str(port)], serve_env, tmp_path / "serve.log") as server:
        server.wait_for_output(rf"at https://127\.0\.0\.1:{port}/ ")
        cert = tmp_path / "config" / "camcap" / "tls" / "cert.pem"
        key = tmp_path / "config" / "camcap" / "tls" / "key.pem"
        assert cert.is_file() and key.stat().st_mode & 0o077 == 0  # the key is private to the user
        context = tls_context(cert)
        wait_answering(f"https://127.0.0.1:{port}/healthz", context, server)
        assert get(f"https://127.0.0.1:{port}/healthz", context) == (200, '{"status":"ok"}')
        # A declared body over the upload limit is refused before it is sent (real uvicorn, real TLS).
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/v1/caption",
            data=b"x" * 1024,
            headers={"Content-Length": str(64 * 1024 * 1024), "Content-Type": "multipart/form-data; boundary=x"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10, context=context)
        assert refused.value.code == 413
        # Plain HTTP to the HTTPS port gets no answer from the app.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()


def test_serve_refuses_a_token_too_short_to_be_safe(serve_env):
    done = subprocess.run(
        [sys.executable, "-m", "camcap", "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-open"],
        env={**serve_env, "CAMCAP_TOKEN": "tooshort"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("camcap: error: The access token must be at least 16 characters")
    assert "Traceback" not in done.stderr


def test_serve_wants_cert_and_key_together(serve_env, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not used")
    done = subprocess.run(
        [sys.executable, "-m", "camcap", "serve", "--cert", str(cert), "--port", str(free_port()), "--no-open"],
        env=serve_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "--cert and --key go together" in done.stderr


# --- the page -------------------------------------------------------------------------------------


def wait_model_ready(base: str, token: str, server: Serve) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while True:
        status, body = get(base + "/v1/info", headers={"Authorization": f"Bearer {token}"})
        if status == 200 and json.loads(body)["status"] == "ready":
            return
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"`camcap serve` never had its model ready ({status} {body}):\n{server.output()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.browser
def test_the_page_shows_why_access_was_denied_and_stops_retrying(serve_env, tmp_path):
    """A page whose token went stale (the server restarted with a new one) is refused by the real
    access middleware. A refused WebSocket reaches a page as a bare 1006, so the page learns why
    from /v1/info, says it verbatim, and stops retrying: only the new URL can help."""
    chromium = find_chromium()
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    new_token = "a-new-token-after-the-restart-0123"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url) if "/v1/info" in request.url else None)

            with serve(["--port", str(port), "--token", TOKEN], serve_env, tmp_path / "first.log") as first:
                wait_answering(base + "/healthz", None, first)
                wait_model_ready(base, TOKEN, first)
                page.goto(f"{base}/?token={TOKEN}")  # the URL `camcap serve` prints
                expect(page.locator("#connection-pill")).to_have_text("Connected")

            with serve(["--port", str(port), "--token", new_token], serve_env, tmp_path / "second.log") as second:
                wait_answering(base + "/healthz", None, second)
                # What the server answers the page's stale cookie, read the way the page reads it.
                status, body = get(base + "/v1/info", headers={"Cookie": f"{TOKEN_COOKIE}={TOKEN}"})
                assert (status, json.loads(body)["code"]) == (401, "token_invalid"), body
                detail = json.loads(body)["detail"]
                # The page retries with growing waits (at most 15 s) until the new server answers.
                expect(page.locator("#notice-title")).to_have_text(
                    "Access denied", timeout=SERVE_START_TIMEOUT_S * 1000
                )
                assert page.locator("#notice-text").text_content() == detail  # verbatim
                expect(page.locator("#connection-pill")).to_have_text("Access denied")
                refused_after = len(asked)
                page.wait_for_timeout(3_000)  # a page that went on retrying would show it by now
                assert len(asked) == refused_after, f"the page asked again after being refused: {asked}"
                expect(page.locator("#connection-pill")).to_have_text("Access denied")
        finally:
            browser.close()
