"""The server's routes, driven through TestClient on the fake backend: camcap.server.

Every WebSocket read has a deadline (`recv`), so a server that stays silent fails a test
instead of hanging the suite.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from camcap import __version__
from camcap.config import Settings
from camcap.engine import timing
from camcap.errors import ModelNotAvailableError
from camcap.models.base import TaskKind
from camcap.server import page
from camcap.server import websocket as ws_module
from camcap.server.app import create_app
from camcap.server.messages import FRAME_MAGIC, CaptionEvent, InfoResponse, ReadyEvent, UnchangedEvent
from tests.fakes import FakeCaptioner

RED, BLUE = (200, 0, 0), (0, 0, 200)
WAIT = 10.0  # seconds; only ever reached when something is broken


def jpeg(colour=RED, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def png(colour=RED, size=(64, 48)) -> bytes:
    """Lossless, so the fake's caption (the mean colour) is exactly `colour`."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def pack(image: bytes, **header) -> bytes:
    raw = json.dumps(header).encode()
    return FRAME_MAGIC + struct.pack(">I", len(raw)) + raw + image


def recv(ws, timeout: float = WAIT) -> dict:
    """The next JSON event, or an AssertionError after `timeout` seconds of silence."""
    box: queue.Queue = queue.Queue()

    def receive() -> None:
        try:
            box.put((True, ws.receive_json()))
        except BaseException as exc:
            box.put((False, exc))

    threading.Thread(target=receive, daemon=True).start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"the server sent nothing for {timeout} s") from None
    if not ok:
        raise value
    return value


def recv_until(ws, kind: str) -> tuple[dict, list[dict]]:
    """Read events until one of type `kind`; return it and the events before it."""
    before = []
    while (event := recv(ws))["type"] != kind:
        before.append(event)
    return event, before


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.01)


def wait_ready(client: TestClient) -> dict:
    wait_for(lambda: client.get("/v1/info").json()["status"] != "loading", "the model to load")
    return client.get("/v1/info").json()


@contextmanager
def serve(fake: FakeCaptioner | None = None, **settings) -> Iterator[TestClient]:
    # TestClient sends `Host: testserver`, which the DNS-rebinding guard refuses unless allowed.
    settings.setdefault("allow_hosts", ["testserver"])
    app = create_app(Settings(model="fake", **settings), captioner=fake or FakeCaptioner())
    with TestClient(app) as client:
        yield client


@pytest.fixture
def fake() -> FakeCaptioner:
    return FakeCaptioner()


@pytest.fixture
def client(fake: FakeCaptioner) -> Iterator[TestClient]:
    with serve(fake) as client:
        wait_ready(client)
        yield client


# --- info, health, page --------------------------------------------------------------------------


def test_info_describes_the_ready_model(client):
    info = InfoResponse.model_validate(client.get("/v1/info").json())
    assert (info.status, info.version, info.spec, info.error) == ("ready", __version__, "fake", None)
    assert info.model is not None
    assert (info.model.name, info.model.tasks, info.model.input_size) == ("fake", ["caption", "query"], 384)
    assert info.limits.max_frame_bytes == Settings().max_frame_bytes


def test_healthz_answers_ok_and_nothing_more(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_model_is_set_up_at_start_and_closed_at_stop(fake):
    with serve(fake) as client:
        wait_ready(client)
        assert fake.is_setup and not fake.is_closed
    assert fake.is_closed
    assert not [t for t in threading.enumerate() if t.name == "camcap-model-worker"]


def test_the_device_is_logged_when_the_model_is_ready(caplog):
    caplog.set_level(logging.INFO, logger="camcap")
    with serve() as client:
        wait_ready(client)
    assert "Model fake ready on cpu (float32" in caplog.text


def test_each_caption_is_logged_at_debug(client, caplog):
    caplog.set_level(logging.DEBUG, logger="camcap.engine.scheduler")
    assert client.post("/v1/caption", files={"image": ("f.jpg", jpeg(), "image/jpeg")}).status_code == 200
    assert "'colour 200 0 0'" in caplog.text


def test_while_the_model_loads_info_says_so_and_frames_are_refused():
    gate = threading.Event()
    try:
        with serve(FakeCaptioner(setup_gate=gate)) as client:
            info = client.get("/v1/info").json()
            assert (info["status"], info["model"]) == ("loading", None)
            assert client.get("/healthz").json() == {"status": "ok"}
            response = client.post("/v1/caption", files={"image": ("f.jpg", jpeg(), "image/jpeg")})
            assert response.status_code == 503
            assert response.json()["code"] == "not_ready"
            assert response.headers["retry-after"]
            with client.websocket_connect("/v1/stream") as ws:
                ws.send_text(json.dumps({"type": "config", "task": "query", "question": "what?"}))
                ws.send_bytes(pack(jpeg(), seq=3))
                error = recv(ws)
                assert (error["type"], error["code"], error["seq"]) == ("error", "not_ready", 3)
                assert error["message"] == (
                    "The model is still loading; wait for the 'ready' event before sending frames."
                )
                gate.set()  # the model finishes loading: the waiting socket gets `ready`
                assert recv(ws)["type"] == "ready"
                ws.send_bytes(pack(jpeg(), seq=4))
                caption, _ = recv_until(ws, "caption")
                assert (caption["seq"], caption["task"]) == (4, "query")  # the early config held
    finally:
        gate.set()


def test_a_model_that_fails_to_load_is_reported_everywhere():
    problem = ModelNotAvailableError("The weights of 'fake' are not cached. Run `camcap pull fake` first.")
    with serve(FakeCaptioner(setup_error=problem)) as client:
        info = wait_ready(client)
        assert (info["status"], info["model"]) == ("error", None)
        assert "camcap pull fake" in info["error"]
        response = client.post("/v1/caption", files={"image": ("f.jpg", jpeg(), "image/jpeg")})
        assert (response.status_code, response.json()["code"]) == (503, "model_error")
        assert "camcap pull fake" in response.json()["detail"]
        with client.websocket_connect("/v1/stream") as ws:
            error = recv(ws)
            assert (error["type"], error["code"]) == ("error", "model_error")
            assert "camcap pull fake" in error["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                recv(ws)
            assert closed.value.code == 1011


def test_a_socket_opened_while_the_server_shuts_down_is_told_so():
    """The model is ready but its scheduler has already stopped (the server is closing): a socket
    that connects now gets `server_closing` in plain words, not a hang or a crash."""
    with serve() as client:
        wait_ready(client)
        client.app.state.host.scheduler.close()  # the first step of shutting down
        closing = {"type": "error", "seq": None, "code": "server_closing", "message": "The server is shutting down."}
        with client.websocket_connect("/v1/stream") as ws:
            assert recv(ws) == closing


def test_a_backend_whose_generate_is_not_lazy_is_refused_at_startup():
    class Eager(FakeCaptioner):
        def generate(self, requests):
            return list(super().generate(requests))

    with serve(Eager()) as client:
        info = wait_ready(client)
    assert info["status"] == "error"
    assert "not a lazy iterator" in info["error"]


def test_the_page_is_served(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "camcap" in response.text


def test_without_the_page_files_a_note_is_served(tmp_path, monkeypatch):
    monkeypatch.setattr(page, "WEB_DIR", tmp_path / "missing")
    with serve() as client:
        response = client.get("/")
        assert response.status_code == 200
        assert "web page is not installed" in response.text
        assert client.get("/static/app.js").status_code == 404


# --- POST /v1/caption ----------------------------------------------------------------------------


def test_multipart_caption_round_trip(client):
    response = client.post("/v1/caption", files={"image": ("frame.png", png(RED), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["caption"], body["model"], body["task"], body["random_weights"]) == (
        "colour 200 0 0",
        "fake",
        "caption",
        False,
    )
    assert body["timings"]["tokens"] == 4
    assert body["inference_ms"] == body["timings"]["inference_ms"] >= 0


def test_multipart_query_with_a_png(client):
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 40), (0, 0, 200, 255)).save(buffer, "PNG")
    response = client.post(
        "/v1/caption",
        files={"image": ("frame.png", buffer.getvalue(), "image/png")},
        data={"task": "query", "question": "What colour is it?"},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["task"], response.json()["caption"]) == ("query", "colour 0 0 200")


@pytest.mark.parametrize(
    ("content", "form", "status", "code", "words"),
    [
        (b"hello, I am text", {}, 400, "invalid_image", "not an image"),
        (jpeg(size=(320, 240))[:-400], {}, 400, "invalid_image", "truncated"),
        (b"", {}, 400, "invalid_image", "empty"),
        (jpeg(), {"task": "detect", "target": "cup"}, 400, "unsupported_task", "supports: caption, query"),
        (jpeg(), {"task": "dance"}, 422, "bad_message", "task"),
        (jpeg(), {"task": "query"}, 422, "bad_message", "question"),
        (jpeg(), {"length": "epic"}, 422, "bad_message", "length"),
    ],
)
def test_multipart_errors_are_4xx_with_a_code_and_a_reason(client, content, form, status, code, words):
    response = client.post("/v1/caption", files={"image": ("f.jpg", content, "image/jpeg")}, data=form)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert words in response.json()["detail"]


def test_multipart_without_an_image_field_is_422(client):
    assert client.post("/v1/caption", data={"task": "caption"}).status_code == 422


def test_frames_over_the_limits_are_413():
    with serve(max_frame_bytes=2000) as client:
        wait_ready(client)
        response = client.post("/v1/caption", files={"image": ("f.jpg", jpeg(size=(640, 480)), "image/jpeg")})
        assert (response.status_code, response.json()["code"]) == (413, "frame_too_large")
    with serve(max_frame_pixels=1000) as client:
        wait_ready(client)
        response = client.post("/v1/caption", files={"image": ("f.jpg", jpeg(size=(64, 48)), "image/jpeg")})
        assert (response.status_code, response.json()["code"]) == (413, "frame_too_large")
        assert "64x48" in response.json()["detail"]


# --- WS /v1/stream -------------------------------------------------------------------------------


def test_websocket_round_trip(client):
    with client.websocket_connect("/v1/stream") as ws:
        ready = ReadyEvent.model_validate(recv(ws))
        assert (ready.model.name, ready.version, ready.model.input_size) == ("fake", __version__, 384)
        assert ready.limits.max_frame_pixels == Settings().max_frame_pixels
        ws.send_bytes(pack(png(RED), seq=7, captured_at=1_730_000_000_000.0, sent_at=time.time() * 1000))
        event, tokens = recv_until(ws, "caption")
        caption = CaptionEvent.model_validate(event)
        assert [t["type"] for t in tokens] == ["token"] * 4 and {t["seq"] for t in tokens} == {7}
        assert caption.text == "".join(t["text"] for t in tokens) == "colour 200 0 0"
        assert (caption.seq, caption.captured_at, caption.task, caption.model) == (
            7,
            1_730_000_000_000.0,
            "caption",
            "fake",
        )
        assert caption.timings.receive_ms is not None and caption.timings.tokens == 4
        # The total counts from the frame's arrival: its decode, then its wait and the model.
        t = caption.timings
        assert t.image_decode_ms > 0 and t.total_ms >= t.image_decode_ms + t.inference_ms


class JumpingClock:
    """Stands in for the `time` module of camcap.engine.timing, whose `monotonic()` is the server's
    clock for every stage of a frame: real time plus the jumps a test makes, so that a stage can
    take an hour on that clock without the test waiting for it."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def perf_counter(self) -> float:
        return time.perf_counter() + self.ahead

    def time(self) -> float:  # wall_ms(): the wall clock is left alone
        return time.time()


HOUR_S = 3600.0


def test_a_frames_total_counts_from_its_arrival_through_its_decode(client, monkeypatch):
    """`total_ms` is bytes received -> caption final. An hour passes on the server's clock between
    the frame's arrival and its decode: a total that started counting after the decode leaves it out."""
    clock = JumpingClock()
    monkeypatch.setattr(timing, "time", clock)
    decode = ws_module.decode_image_off_loop

    async def decode_an_hour_later(*args: Any, **kwargs: Any) -> Any:
        clock.ahead += HOUR_S
        return await decode(*args, **kwargs)

    monkeypatch.setattr(ws_module, "decode_image_off_loop", decode_an_hour_later)
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(png(RED), seq=1))
        caption = CaptionEvent.model_validate(recv_until(ws, "caption")[0])
    assert caption.timings.total_ms >= HOUR_S * 1000


def test_config_changes_the_task_of_later_frames(client):
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_text(json.dumps({"type": "config", "task": "query", "question": "What colour?"}))
        ws.send_bytes(pack(png(BLUE), seq=1))
        caption, _ = recv_until(ws, "caption")
        assert (caption["task"], caption["text"]) == ("query", "colour 0 0 200")


def test_bare_frames_get_sequence_numbers(client):
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        seqs = []
        # Four different pictures: an unchanged one would be answered `unchanged`, not captioned.
        for message in (jpeg(RED), jpeg(BLUE), pack(jpeg(RED), seq=10), jpeg(BLUE)):
            ws.send_bytes(message)
            seqs.append(recv_until(ws, "caption")[0]["seq"])
        assert seqs == [0, 1, 10, 11]


@pytest.mark.parametrize(
    ("send", "code", "words", "seq"),
    [
        (lambda ws: ws.send_text("{not json"), "bad_message", "not JSON", None),
        (
            lambda ws: ws.send_text('{"type": "subscribe"}'),
            "bad_message",
            "Unknown message type 'subscribe'; the only text message is a config, e.g. "
            '{"type": "config", "task": "query", "question": "What is on the table?"}. Frames are binary.',
            None,
        ),
        (lambda ws: ws.send_text('["config"]'), "bad_message", "Unknown message type None", None),
        (lambda ws: ws.send_text('{"type": "config", "task": "dance"}'), "bad_message", "task", None),
        (lambda ws: ws.send_text('{"type": "config", "task": "query"}'), "bad_message", "question", None),
        (lambda ws: ws.send_text('{"type": "config", "speed": 3}'), "bad_message", "speed", None),
        (
            lambda ws: ws.send_text('{"type": "config", "change_threshold": 101}'),
            "bad_message",
            "change_threshold",
            None,
        ),
        (lambda ws: ws.send_text("x" * 20_000), "bad_message", "at most", None),
        (
            lambda ws: ws.send_text('{"type": "config", "task": "point", "target": "cup"}'),
            "unsupported_task",
            "supports: caption, query",
            None,
        ),
        (lambda ws: ws.send_bytes(pack(b"hello", seq=5)), "invalid_image", "not an image", 5),
        (lambda ws: ws.send_bytes(pack(jpeg(size=(320, 240))[:-400], seq=6)), "invalid_image", "truncated", 6),
        (lambda ws: ws.send_bytes(pack(b"", seq=8)), "invalid_image", "empty", 8),
        (lambda ws: ws.send_bytes(b""), "invalid_image", "empty", 0),
        (lambda ws: ws.send_bytes(FRAME_MAGIC + b"\x00\x00\x00\x05{bad}"), "bad_frame", "header", None),
    ],
)
def test_bad_messages_get_an_error_event_and_the_stream_goes_on(client, send, code, words, seq):
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        send(ws)
        error = recv(ws)
        assert (error["type"], error["code"], error["seq"]) == ("error", code, seq)
        assert words in error["message"]
        ws.send_bytes(pack(png(RED), seq=50))
        caption, before = recv_until(ws, "caption")
        assert caption["seq"] == 50 and caption["task"] == "caption"  # the rejected config changed nothing
        assert all(event["type"] == "token" for event in before)


def test_frames_over_the_pixel_limit_get_an_error_event():
    with serve(max_frame_pixels=1000) as client, client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(jpeg(size=(64, 48)), seq=2))
        error = recv(ws)
        assert (error["code"], error["seq"]) == ("frame_too_large", 2)
        ws.send_bytes(pack(png(RED, size=(40, 25)), seq=3))  # 1000 pixels: the stream goes on
        assert recv_until(ws, "caption")[0]["seq"] == 3


def test_two_clients_share_the_model_and_both_get_their_captions(client, fake):
    with client.websocket_connect("/v1/stream") as one, client.websocket_connect("/v1/stream") as two:
        assert recv(one)["stream_id"] != recv(two)["stream_id"]
        one.send_bytes(pack(png(RED), seq=1))
        two.send_bytes(pack(png(BLUE), seq=1))
        assert recv_until(one, "caption")[0]["text"] == "colour 200 0 0"
        assert recv_until(two, "caption")[0]["text"] == "colour 0 0 200"
    assert sorted(fake.seen) == sorted([(200, 0, 0), (0, 0, 200)])


def test_disconnecting_mid_caption_cancels_it_and_frees_the_stream():
    fake = FakeCaptioner(token_delay=0.005, words=2000)
    with serve(fake) as client:
        wait_ready(client)
        scheduler = client.app.state.host.scheduler  # type: ignore[attr-defined]
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(jpeg(), seq=1))
            assert recv(ws)["type"] == "token"
            assert scheduler.stream_count == 1
        wait_for(lambda: fake.closed_early == 1, "the generation to be cancelled")
        wait_for(lambda: scheduler.stream_count == 0, "the stream to be released")
        # The model is free again at once: another client's frame is captioned.
        fake.words = 3
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(jpeg(), seq=2))
            assert recv_until(ws, "caption")[0]["seq"] == 2


def test_http_and_websocket_share_one_model_worker(client, fake):
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(png(RED), seq=1))
        response = client.post("/v1/caption", files={"image": ("f.png", png(BLUE), "image/png")})
        assert response.json()["caption"] == "colour 0 0 200"
        assert recv_until(ws, "caption")[0]["text"] == "colour 200 0 0"
    assert client.app.state.host.scheduler.stream_count == 0  # type: ignore[attr-defined]
    assert len(fake.seen) == 2


def test_a_model_without_captions_refuses_the_default_task_with_the_supported_list():
    with serve(FakeCaptioner(tasks=(TaskKind.QUERY,))) as client, client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(jpeg(), seq=4))
        error = recv(ws)
        assert (error["code"], error["seq"]) == ("unsupported_task", 4)
        assert "supports: query" in error["message"]
        # The socket goes on: a task the model can do is answered.
        ws.send_text(json.dumps({"type": "config", "task": "query", "question": "what?"}))
        ws.send_bytes(pack(jpeg(), seq=5))
        caption = recv_until(ws, "caption")[0]
        assert (caption["seq"], caption["task"]) == (5, "query")


def test_a_config_sent_while_loading_is_checked_when_the_model_is_ready():
    gate = threading.Event()
    try:
        with serve(FakeCaptioner(setup_gate=gate)) as client, client.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps({"type": "config", "task": "detect", "target": "cup"}))
            gate.set()
            assert recv(ws)["type"] == "ready"
            error = recv(ws)
            assert error["code"] == "unsupported_task" and "supports: caption, query" in error["message"]
            ws.send_bytes(pack(png(RED), seq=1))
            assert recv_until(ws, "caption")[0]["task"] == "caption"
    finally:
        gate.set()


# --- change gating and the stale-work cut over the WebSocket ------------------------------------


def test_an_unchanged_frame_is_answered_unchanged_and_counted_in_the_next_caption(client, fake):
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(png(RED), seq=1, captured_at=1000.0))
        recv_until(ws, "caption")
        ws.send_bytes(pack(jpeg(RED), seq=2, captured_at=2000.0))  # the same picture, re-encoded
        unchanged = UnchangedEvent.model_validate(recv(ws))
        assert (unchanged.seq, unchanged.reference_seq, unchanged.difference, unchanged.captured_at) == (
            2,
            1,
            0.0,
            2000.0,
        )
        ws.send_bytes(pack(png(BLUE), seq=3))
        caption = CaptionEvent.model_validate(recv_until(ws, "caption")[0])
        assert (caption.seq, caption.unchanged, caption.skipped) == (3, 1, 0)
    assert len(fake.seen) == 2


def test_a_config_forces_a_caption_and_can_turn_gating_off(client, fake):
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(png(RED), seq=1))
        recv_until(ws, "caption")
        ws.send_text(json.dumps({"type": "config", "task": "caption"}))  # the same task, sent again
        ws.send_bytes(pack(png(RED), seq=2))
        assert recv_until(ws, "caption")[0]["seq"] == 2
        ws.send_text(json.dumps({"type": "config", "task": "caption", "change_threshold": 0}))
        for seq in (3, 4):
            ws.send_bytes(pack(png(RED), seq=seq))
            event, before = recv_until(ws, "caption")
            assert event["seq"] == seq and all(e["type"] == "token" for e in before)
        ws.send_text(json.dumps({"type": "config", "task": "caption"}))  # back to the server's threshold
        ws.send_bytes(pack(png(RED), seq=5))
        recv_until(ws, "caption")
        ws.send_bytes(pack(png(RED), seq=6))
        assert recv(ws)["type"] == "unchanged"
    assert len(fake.seen) == 5


def test_the_server_setting_can_turn_gating_off():
    fake = FakeCaptioner()
    with serve(fake, change_threshold=0) as client, client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        for seq in (1, 2):
            ws.send_bytes(pack(png(RED), seq=seq))
            assert recv_until(ws, "caption")[0]["seq"] == seq


def test_a_config_sent_while_loading_sets_the_options_of_the_stream():
    """The server gates nothing (threshold 0); a page asks for gating before the model is ready.
    Its stream, opened once the model is, must use the page's threshold."""
    gate = threading.Event()
    try:
        fake = FakeCaptioner(setup_gate=gate)
        with serve(fake, change_threshold=0) as client, client.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps({"type": "config", "task": "caption", "change_threshold": 5}))
            gate.set()
            assert recv(ws)["type"] == "ready"
            ws.send_bytes(pack(png(RED), seq=1))
            assert recv_until(ws, "caption")[0]["seq"] == 1
            ws.send_bytes(pack(png(RED), seq=2))
            unchanged = recv(ws)
            assert (unchanged["type"], unchanged["seq"]) == ("unchanged", 2)
    finally:
        gate.set()


def test_a_frame_reaches_the_model_at_its_input_size():
    fake = FakeCaptioner(input_size=32)
    with serve(fake) as client, client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(pack(png(RED, size=(128, 96)), seq=1))
        recv_until(ws, "caption")
    assert fake.sizes == [(43, 32)]  # the short side scaled down to the model's input size


def test_a_message_of_exactly_the_size_limit_is_a_frame():
    frame = pack(png(RED), seq=1)
    frame += b"\0" * (2048 - len(frame))  # after the PNG's end: the decoder stops before it
    with serve(max_ws_message_bytes=2048) as client, client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(frame)
        assert recv_until(ws, "caption")[0]["seq"] == 1
        ws.send_bytes(frame + b"\0")
        error = recv(ws)
        assert (error["code"], error["seq"]) == ("message_too_large", None)
        assert error["message"].startswith("The message is 2049 bytes, over the limit of 2048 (max_ws_message_bytes)")


def test_a_stream_that_asks_for_the_stale_cut_gets_superseded_errors():
    fake = FakeCaptioner(token_delay=0.005, words=2000)  # ten seconds of caption, unless it is cut
    with serve(fake, stale_after_ms=100) as client, client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_text(json.dumps({"type": "config", "task": "caption", "cut_stale": True}))
        ws.send_bytes(pack(png(RED), seq=1, captured_at=1000.0))
        assert recv(ws)["type"] == "token"
        fake.words = 4  # for the next generation
        ws.send_bytes(pack(png(BLUE), seq=2, captured_at=2000.0))
        error, _ = recv_until(ws, "error")
        assert (error["seq"], error["code"]) == (1, "superseded")
        caption, _ = recv_until(ws, "caption")
        assert (caption["seq"], caption["text"]) == (2, "colour 0 0 200")
    assert fake.closed_early == 1
