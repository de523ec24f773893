"""For the OpenAI-compatibility tests: real `camcap serve` processes, and a real HTTP proxy between
two of them that can inject the faults a remote server has (429, 401, slowness, a connection cut
mid-answer). The model behind is always a real random-weight checkpoint; only the wire is tampered
with, and only where a test says so.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import free_port, stop_process

SERVER_START_TIMEOUT_S = 300  # a bound, not an expectation: 2 shared cores build and load the model
UPSTREAM_TOKEN = "upstream-token-0123456789abcdef"


@dataclass
class Served:
    """A running `camcap serve` subprocess."""

    url: str  # http://127.0.0.1:<port>
    process: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def info(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/info", headers=self.headers(), timeout=5)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


def start_serve(
    model: str,
    env: dict[str, str],
    log_dir: Path,
    *args: str,
    host: str = "127.0.0.1",
    token: str | None = None,
    extra_env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> Served:
    """Start `camcap serve --model MODEL` on a free port and wait until its model is ready (or
    failed, if `wait_ready` is False: then wait until it answers at all)."""
    port = free_port()
    log_path = log_dir / f"serve-{port}.log"
    command = [
        sys.executable, "-m", "camcap", "-vv", "serve", "--model", model, "--device", "cpu",
        "--host", host, "--port", str(port), "--no-open", *args,
    ]  # fmt: skip
    full_env = {**env, "CAMCAP_MAX_NEW_TOKENS": "6", **(extra_env or {})}
    if token is not None:
        full_env["CAMCAP_TOKEN"] = token
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", process, log_path, token)
    try:
        _wait(served, wait_ready)
    except BaseException:
        served.stop()
        raise
    return served


def _wait(served: Served, wait_ready: bool) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            pytest.fail(f"`camcap serve` exited with {served.process.returncode}:\n{served.log()[-4000:]}")
        try:
            info = served.info()
        except httpx.HTTPError:
            time.sleep(0.3)
            continue
        if info["status"] == "ready" or (not wait_ready and info["status"] != "loading"):
            return
        if info["status"] == "error":
            pytest.fail(f"The model failed to load: {info['error']}\n{served.log()[-4000:]}")
        time.sleep(0.3)
    pytest.fail(f"`camcap serve` was not ready within {SERVER_START_TIMEOUT_S} s:\n{served.log()[-4000:]}")


# --- a proxy that injects faults -------------------------------------------------------------------


@dataclass
class Fault:
    """What the proxy does to the next `times` chat completion requests (-1: every one)."""

    kind: str  # "status" | "drop" | "drop_after_token" | "hold"
    times: int = 1
    status: int = 429
    body: bytes = b'{"error": {"message": "injected", "type": "rate_limit_error", "code": "injected"}}'
    headers: dict[str, str] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)  # "hold": answer once set


class FaultProxy:
    """A real HTTP proxy in front of `upstream` (a camcap serve). Records every request it sees."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, headers, body
        self.held = threading.Semaphore(0)  # released each time a "hold" fault starts holding
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(120, connect=5))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            for fault in self._faults:
                fault.release.set()
            self._faults.clear()

    def reset(self) -> None:
        """Forget faults, requests and holds of earlier tests."""
        self.clear()
        self.requests.clear()
        self.held = threading.Semaphore(0)

    def chat_requests(self) -> list[bytes]:
        return [body for method, path, _, body in self.requests if path.endswith("/chat/completions")]

    def close(self) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _take_fault(self, path: str) -> Fault | None:
        if not path.endswith("/chat/completions"):
            return None
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.pop(0)
            return fault

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {key: value for key, value in handler.headers.items()}
        self.requests.append((method, handler.path, headers, body))
        fault = self._take_fault(handler.path)
        if fault is not None and fault.kind == "status":
            handler.send_response(fault.status)
            for key, value in {"Content-Type": "application/json", **fault.headers}.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(fault.body)))
            handler.end_headers()
            handler.wfile.write(fault.body)
            return
        if fault is not None and fault.kind == "drop":  # hang up before any answer
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "hold":
            self.held.release()
            fault.release.wait(60)
        forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        try:
            with self._client.stream(method, self.upstream + handler.path, headers=forwarded, content=body) as answer:
                # HTTP/1.0 style: the body ends when the connection closes, so a cut looks like a cut.
                handler.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        handler.send_header(key, value)
                handler.send_header("Connection", "close")
                handler.end_headers()
                for piece in answer.iter_raw():
                    handler.wfile.write(piece)
                    handler.wfile.flush()
                    if (
                        fault is not None
                        and fault.kind == "drop_after_token"
                        and b'"content":"' in piece.replace(b'"content":""', b"")
                    ):
                        handler.connection.shutdown(socket.SHUT_RDWR)  # cut mid-answer
                        return
        except (httpx.HTTPError, OSError):
            with contextlib.suppress(OSError):  # the client may be gone already
                handler.connection.shutdown(socket.SHUT_RDWR)
