"""Faults the server must survive: a model that fails on a frame, and shutting down mid-caption.

The shutdown tests run a real uvicorn on a thread (camcap.server.threaded): TestClient never sends
the close that uvicorn sends to open sockets when it stops.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from camcap.config import Settings
from camcap.server.app import create_app
from camcap.server.threaded import serve_in_thread
from tests.fakes import FakeCaptioner
from tests.test_server import BLUE, RED, pack, png, recv, recv_until, serve, wait_for, wait_ready


class OutOfMemoryError(RuntimeError):
    """What torch raises when a batch does not fit in GPU memory (torch.cuda.OutOfMemoryError)."""


def test_a_model_failure_on_one_frame_is_an_error_for_that_frame_and_the_stream_goes_on():
    fake = FakeCaptioner(fail_with=OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with serve(fake) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(RED), seq=1))
            error = recv(ws)
            assert (error["type"], error["code"], error["seq"]) == ("error", "model_error", 1)
            assert "CUDA out of memory" in error["message"]
            fake.fail_with = None  # the memory is back
            ws.send_bytes(pack(png(BLUE), seq=2))
            assert recv_until(ws, "caption")[0]["text"] == "colour 0 0 200"
        # The one-shot route says the same, as a server error for that request only.
        fake.fail_with = OutOfMemoryError("CUDA out of memory")
        response = client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")})
        assert (response.status_code, response.json()["code"]) == (500, "model_error")
        fake.fail_with = None
        assert client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")}).status_code == 200
        assert client.app.state.host.scheduler.running  # type: ignore[attr-defined]


def test_a_failing_frame_releases_its_images(monkeypatch):
    """Nothing of a failed batch stays referenced once the worker moves on (no leak per failure)."""
    import gc
    import weakref

    from PIL import Image

    # pytest keeps every log record, and a logged exception keeps its traceback's frames (and
    # their images) alive; a server's log handlers format a record and let it go.
    monkeypatch.setattr(logging.getLogger("camcap.engine.scheduler"), "disabled", True)

    refs: list[weakref.ref] = []
    original = Image.Image.convert

    def tracking(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        refs.append(weakref.ref(self))
        return original(self, *args, **kwargs)

    fake = FakeCaptioner(fail_with=OutOfMemoryError("CUDA out of memory"))
    with serve(fake) as client:
        wait_ready(client)
        Image.Image.convert = tracking  # type: ignore[method-assign]
        try:
            for _ in range(3):
                response = client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")})
                assert response.status_code == 500
        finally:
            Image.Image.convert = original  # type: ignore[method-assign]
        fake.fail_with = None
        assert client.post("/v1/caption", files={"image": ("f.png", png(BLUE), "image/png")}).status_code == 200
        gc.collect()
        assert refs, "the fake never saw an image"
        assert [ref for ref in refs if ref() is not None] == []


def _camcap_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("camcap-")}


@pytest.mark.parametrize("stop_while", ["captioning", "idle"])
def test_shutting_down_cancels_captions_in_progress_and_leaves_no_threads(stop_while):
    before = set(threading.enumerate())
    fake = FakeCaptioner(token_delay=0.01, words=3000)  # a caption of ~30 s unless cancelled
    app = create_app(Settings(model="fake"), captioner=fake)
    closed_with = None
    with serve_in_thread(app, timeout_graceful_shutdown=10) as (server, port):
        wait_for(lambda: app.state.host.scheduler is not None, "the model to load")
        with ws_connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10, close_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            if stop_while == "captioning":
                ws.send(pack(png(RED), seq=1))
                assert json.loads(ws.recv(timeout=10))["type"] == "token"
            server.should_exit = True
            try:
                while True:
                    event = json.loads(ws.recv(timeout=15))
                    assert event["type"] in ("token", "error"), event
            except ConnectionClosed as closed:
                closed_with = closed.rcvd.code if closed.rcvd is not None else None
    # uvicorn says "service restart" to open sockets; the caption (30 s of tokens) was cut short.
    assert closed_with == 1012
    if stop_while == "captioning":
        assert fake.closed_early == 1
    assert fake.is_closed
    assert _camcap_threads() == set()
    wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()], "threads to end")


def test_an_app_stopped_with_a_caption_in_progress_releases_everything():
    """The TestClient path: leaving the app while a stream is open must not hang or leak threads."""
    before = set(threading.enumerate())
    fake = FakeCaptioner(token_delay=0.01, words=3000)
    with serve(fake) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(RED), seq=1))
            assert recv(ws)["type"] == "token"
    assert fake.is_closed and fake.closed_early == 1
    assert _camcap_threads() == set()
    wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()], "threads to end")
