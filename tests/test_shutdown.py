"""Stopping a real `camcap serve`: Ctrl+C (SIGINT) exits 130 as `camcap --help` promises, and SIGTERM
with slow clients still connected ends their requests with an answer, not a traceback and a 500.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.live_server import free_port, stop_process
from tests.test_exhaustion import read_answer, start_upload

MODEL = "random:blip-tiny"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30  # generous: only reached when shutdown hangs


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def served(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**subprocess_env, "CAMCAP_MAX_NEW_TOKENS": "3"}
    command = [sys.executable, "-m", "camcap", "serve", "--model", MODEL, "--device", "cpu", "--port", str(port),
               "--no-open"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Served(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=5) as answer:
                    if json.load(answer)["status"] == "ready":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`camcap serve` did not get ready:\n{server.text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop_process(process)


def test_ctrl_c_exits_130(served):
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(STOP_TIMEOUT_S) == 130, served.text()[-3000:]
    assert "camcap: interrupted" in served.text()
    assert "Traceback" not in served.text()


def test_sigterm_with_slow_clients_answers_them_and_logs_no_traceback(served):
    with ExitStack() as clients:
        streams = [clients.enter_context(connect(f"ws://127.0.0.1:{served.port}/v1/stream")) for _ in range(3)]
        for stream in streams:
            assert json.loads(stream.recv(timeout=10))["type"] == "ready"
        uploads = [clients.enter_context(start_upload(served.port, 4_000_000, 1_000_000)) for _ in range(3)]
        time.sleep(0.3)  # let the server start reading the uploads (not a timing assertion)
        served.process.send_signal(signal.SIGTERM)
        for upload in uploads:
            status, answer = read_answer(upload)
            assert status == 503 and b'"server_closing"' in answer, answer[-500:]
        for stream in streams:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    stream.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # "service restart"
    # Ended by the signal it was sent, after a clean shutdown (a shell shows 143).
    assert served.process.wait(STOP_TIMEOUT_S) == -signal.SIGTERM
    log = served.text()
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]
    assert "timeout graceful shutdown exceeded" not in log, log[-3000:]
    assert "Finished server process" in log
