"""Holding the server under exhaustion: idle streams, held uploads, large in-limit decodes, and
running out of file descriptors. Each test reproduces a way a client (hostile or unlucky) used to
tie the server up, and checks that it no longer does.

The slot tests drive the app through TestClient on the fake backend; uploads need a real uvicorn
(TestClient sends a body whole), and memory and descriptors a real `camcap serve` subprocess.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from PIL import Image
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from camcap.config import Settings
from camcap.engine.frames import DecodeBudget
from camcap.server.app import create_app, uvicorn_options
from camcap.server.limits import StreamSlot
from camcap.server.threaded import serve_in_thread
from tests.fakes import FakeCaptioner
from tests.live_server import free_port, stop_process
from tests.test_server import jpeg, pack, png, recv, recv_until, serve, wait_for, wait_ready

MODEL = "random:blip-tiny"
START_TIMEOUT_S = 120

# --- idle streams ---------------------------------------------------------------------------------


def test_idle_streams_hold_no_slot():
    """Clients that connect and send nothing (a paused page, or someone holding sockets open) do
    not keep a streaming client or a one-shot caption out."""
    with serve(max_streams=2) as client:
        wait_ready(client)
        with ExitStack() as idle:
            for _ in range(4):
                ws = idle.enter_context(client.websocket_connect("/v1/stream"))
                assert recv(ws)["type"] == "ready"
            with client.websocket_connect("/v1/stream") as live:
                assert recv(live)["type"] == "ready"
                live.send_bytes(pack(png(), seq=1))
                assert recv_until(live, "caption")[0]["seq"] == 1
            answer = client.post("/v1/caption", files={"image": ("a.png", png(), "image/png")})
            assert answer.status_code == 200, answer.text


def test_a_stream_that_stops_sending_gives_its_slot_back():
    with serve(max_streams=1, stream_idle_s=0.3) as client:
        wait_ready(client)
        slots = client.app.state.stream_slots  # type: ignore[attr-defined]
        with client.websocket_connect("/v1/stream") as first, client.websocket_connect("/v1/stream") as second:
            recv(first), recv(second)
            first.send_bytes(pack(png(), seq=1))
            recv_until(first, "caption")
            assert slots.in_use == 1
            # The first stream now sends nothing (its page was paused): after stream_idle_s its slot is free.
            wait_for(lambda: slots.in_use == 0, "the idle stream's slot to be released")
            second.send_bytes(pack(png((0, 0, 200)), seq=1))
            assert recv_until(second, "caption")[0]["seq"] == 1
            # The first page comes back while the second is served: it is told so, as a new client would be.
            first.send_bytes(pack(png(), seq=2))
            refused = recv(first)
            assert (refused["type"], refused["code"]) == ("error", "too_many_streams")
            with pytest.raises(WebSocketDisconnect) as closed:
                recv(first)
            assert closed.value.code == 1013


def test_a_frame_being_captioned_keeps_its_slot_however_long_it_takes(monkeypatch):
    """The model holds the stream's frame for several idle periods: each time the slot keeper
    looks, it finds a frame in flight (not an idle stream), and the slot stays taken."""
    looks: list[float | None] = []  # what the keeper saw each time: seconds idle, or None (in flight)
    idle_for = StreamSlot.idle_for

    def watched_idle_for(self: StreamSlot) -> float | None:
        idle = idle_for(self)
        looks.append(idle)
        return idle

    monkeypatch.setattr(StreamSlot, "idle_for", watched_idle_for)
    fake = FakeCaptioner(gated=True)
    with serve(fake, max_streams=1, stream_idle_s=0.1) as client:
        wait_ready(client)
        slots = client.app.state.stream_slots  # type: ignore[attr-defined]
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(), seq=1))
            wait_for(lambda: len(fake.seen) == 1, "the model to take the frame")
            before = len(looks)
            # The keeper looks again a whole idle period after each look that found a frame in
            # flight: three more looks span more than stream_idle_s while the model is busy.
            wait_for(lambda: len(looks) >= before + 3 or slots.in_use == 0, "three more looks by the slot keeper")
            assert slots.in_use == 1
            assert set(looks[before:]) == {None}
            fake.allow()
            assert recv_until(ws, "caption")[0]["seq"] == 1


# --- held uploads ---------------------------------------------------------------------------------


@contextmanager
def real_server(**settings) -> Iterator[int]:
    """The app under uvicorn on a thread, with `camcap serve`'s uvicorn options; yields the port."""
    config = Settings(model="fake", **settings)
    app = create_app(config, captioner=FakeCaptioner())
    with serve_in_thread(app, **uvicorn_options(config)) as (_, port):
        yield port


def start_upload(port: int, declared: int, sent: int) -> socket.socket:
    """A multipart POST that declares `declared` body bytes and sends only `sent` of them."""
    boundary = "camcapboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    request = (
        f"POST /v1/caption HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(request + head + b"\xff" * (sent - len(head)))
    return sock


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and raw answer of an HTTP/1.1 response (read until the server closes)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert data, "the server closed the connection without answering"
    return int(data.split(b" ", 2)[1]), data


def test_an_upload_held_short_of_complete_is_answered_408():
    with real_server(upload_timeout_s=0.5) as port, start_upload(port, 2_000_000, 1_000_000) as held:
        status, answer = read_answer(held)  # before the fix: no answer, ever (socket timeout)
    assert status == 408 and b'"upload_timeout"' in answer


def test_bodies_being_received_are_capped_in_bytes_together():
    limit = 3 * 1_000_000
    with real_server(max_upload_bytes_in_flight=limit, upload_timeout_s=30) as port, ExitStack() as held:
        for _ in range(3):
            held.enter_context(start_upload(port, 1_000_000, 500_000))
        time.sleep(0.3)  # let the server start reading all three (not a timing assertion)
        with start_upload(port, 1_000_000, 1000) as one_more:
            status, answer = read_answer(one_more)
    assert status == 503 and b'"uploads_busy"' in answer and b"retry-after" in answer.lower()


def test_a_complete_upload_still_gets_its_caption():
    with real_server(upload_timeout_s=5) as port:
        import httpx

        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/caption", files={"image": ("a.jpg", jpeg(), "image/jpeg")}, timeout=10
        )
    assert answer.status_code == 200, answer.text


# --- file descriptors -------------------------------------------------------------------------


def start_serve(
    env: dict[str, str], log_path: Path, preexec_fn: Callable[[], None] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A real `camcap serve` of a tiny model, its output in `log_path`; returns it once ready."""
    port = free_port()
    command = [sys.executable, "-m", "camcap", "serve", "--model", MODEL, "--device", "cpu", "--port", str(port),
               "--no-open"]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=5) as answer:
                if json.load(answer)["status"] == "ready":
                    return process, port
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"`camcap serve` did not get ready:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def healthz_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="descriptor limits are POSIX rlimits")
def test_running_out_of_descriptors_neither_floods_the_log_nor_stops_the_server(subprocess_env, tmp_path):
    import resource

    limit = 256

    def low_descriptor_limit() -> None:  # in the child, before it runs: as `ulimit -n 256` would
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    log = tmp_path / "serve.log"
    env = {**subprocess_env, "CAMCAP_HEADER_TIMEOUT_S": "2"}
    process, port = start_serve(env, log, preexec_fn=low_descriptor_limit)
    held: list[socket.socket] = []
    try:
        # More connections than the server has descriptors, each sending half a request's headers.
        for _ in range(limit + 44):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                held.append(sock)
            except OSError:
                pass  # closed at once by a server that is full: what it should do
        time.sleep(1.0)  # what the half-open connections would do to the log, they do now
        # The server is still there: once the slow clients' time is up, a health check gets in.
        deadline = time.monotonic() + 30
        while not healthz_answers(port):
            assert time.monotonic() < deadline, f"/healthz never answered:\n{log.read_text(errors='replace')[-3000:]}"
            time.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
        stop_process(process)
    text = log.read_text(errors="replace")
    assert text.count("out of system resource") <= 3, f"{text.count('out of system resource')} lines"
    assert "Invalid file descriptor" not in text  # accept retries that fired after shutdown
    assert len(text) < 200_000, f"the log grew to {len(text)} characters"


@pytest.mark.parametrize("filtered", [False, True], ids=["asyncio-alone", "with-the-filter"])
def test_an_accept_retry_after_the_listener_closed_logs_no_traceback(caplog, filtered):
    """What asyncio does once per failed accept when descriptors ran out (CPython issue 151615),
    fired after shutdown closed the socket: without the filter, a traceback each time."""
    from camcap.server.serving import ClosedListenerRetryFilter

    asyncio_log = logging.getLogger("asyncio")
    log_filter = ClosedListenerRetryFilter()
    if filtered:
        asyncio_log.addFilter(log_filter)
    loop = asyncio.new_event_loop()
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        listener.close()
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.call_soon(loop._start_serving, asyncio.Protocol, listener)  # type: ignore[attr-defined]
            loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
        asyncio_log.removeFilter(log_filter)
    retried = [r for r in caplog.records if r.getMessage().startswith("Exception in callback")]
    if filtered:
        assert retried == []
    else:  # the record the filter is written for really looks like this
        assert len(retried) == 1 and "Invalid file descriptor" in str(retried[0].exc_info[1])


# --- decode memory --------------------------------------------------------------------------------


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of process `pid`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"{field} is not in /proc/{pid}/status")


def large_png(size: tuple[int, int]) -> bytes:
    """An RGBA PNG within the default pixel limit that compresses to almost nothing: cheap to
    send, and each decode still costs 4 bytes a pixel before the RGB copy."""
    buffer = io.BytesIO()
    Image.new("RGBA", size, (200, 30, 30, 255)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads and resets peak memory in /proc")
def test_large_frames_within_the_limits_decode_in_bounded_memory(subprocess_env, tmp_path):
    frame = large_png((4096, 3072))  # 12.6 megapixels: within max_frame_pixels
    process, port = start_serve({**subprocess_env, "CAMCAP_MAX_NEW_TOKENS": "2"}, tmp_path / "serve.log")
    try:
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        before = memory_mb(process.pid, "VmRSS")
        with ExitStack() as streams:
            sockets = [streams.enter_context(connect(f"ws://127.0.0.1:{port}/v1/stream")) for _ in range(4)]
            for ws in sockets:
                assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            for ws in sockets:  # four large frames arrive together
                ws.send(pack(frame, seq=1))
            for ws in sockets:
                while (event := json.loads(ws.recv(timeout=120)))["type"] not in ("caption", "unchanged", "error"):
                    pass
                assert event["type"] != "error", event
        peak = memory_mb(process.pid, "VmHWM")
    finally:
        stop_process(process)
    # One 12.6-megapixel decode costs about 100 MB at its peak; four at once cost four times that.
    print(f"server memory: {before:.0f} MB before, peak {peak:.0f} MB")
    assert peak - before < 250, f"decoding took the server from {before:.0f} MB to a peak of {peak:.0f} MB"


def test_the_decode_budget_lets_small_frames_pass_beside_a_large_one_and_never_overflows():
    async def scenario() -> list[str]:
        budget = DecodeBudget(100)
        order: list[str] = []
        big = await budget.acquire(80)
        huge_task = asyncio.ensure_future(budget.acquire(500))  # over the whole budget: waits to be alone
        small = await asyncio.wait_for(budget.acquire(20), 5)  # fits beside the big one at once
        order.append("small")
        await asyncio.sleep(0)
        assert not huge_task.done() and budget.in_use == 100
        budget.release(big)
        budget.release(small)
        huge = await asyncio.wait_for(huge_task, 5)
        order.append("huge")
        assert budget.in_use == huge == 100
        budget.release(huge)
        assert budget.in_use == 0
        return order

    assert asyncio.run(scenario()) == ["small", "huge"]


def test_a_websocket_message_over_the_limit_closes_the_socket_with_1009_as_documented():
    from websockets.exceptions import ConnectionClosed

    with real_server(max_ws_message_bytes=4096) as port, connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(pack(jpeg(), seq=1) + b"\0" * 8192)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
