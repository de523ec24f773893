"""The resource limits: camcap.server.limits on its own (property tests), then as the app applies them."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from camcap.config import Settings
from camcap.engine.frames import DecodeBudget
from camcap.models.base import Task
from camcap.server import websocket as ws_module
from camcap.server.limits import BodySizeLimitMiddleware, FrameRate, StreamLimits, StreamSlots, task_text_problem
from camcap.server.session import Session
from tests.fakes import FakeCaptioner
from tests.test_server import RED, jpeg, pack, png, recv, recv_until, serve, wait_for, wait_ready

# --- FrameRate ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 60),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=80),
    window=st.floats(0.01, 5),
)
def test_frames_handled_never_exceed_the_burst_plus_the_rate(rate, gaps, window):
    """A reader that waits out each delay handles at most burst + rate * w frames in any w seconds."""
    clock = Clock()
    limit = FrameRate(rate, clock=clock)
    handled = []
    for gap in gaps:
        clock.now += gap  # the next frame arrives...
        clock.now += limit.delay()  # ...and is handled once its wait is over
        handled.append(clock.now)
    for i, start in enumerate(handled):
        inside = sum(1 for t in handled[i:] if t <= start + window)
        assert inside <= limit.burst + rate * window + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 60), count=st.integers(1, 50), slack=st.floats(1.0, 3.0))
def test_a_client_within_the_rate_never_waits(rate, count, slack):
    clock = Clock()
    limit = FrameRate(rate, clock=clock)
    for _ in range(count):
        clock.now += slack / rate
        assert limit.delay() == 0.0


def test_a_burst_is_let_through_then_paced():
    clock = Clock()
    limit = FrameRate(10, clock=clock)
    assert [limit.delay() for _ in range(10)] == [0.0] * 10
    assert limit.delay() == pytest.approx(0.1)
    assert limit.delay() == pytest.approx(0.2)  # still unpaid: queued behind the previous one


def test_rates_must_be_positive():
    with pytest.raises(ValueError, match="max_fps_per_stream"):
        FrameRate(0)


# --- StreamSlots and text -------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 20), steps=st.lists(st.booleans(), max_size=100))
def test_slots_never_exceed_their_capacity(capacity, steps):
    slots, held = StreamSlots(capacity), 0
    for take in steps:
        if take:
            got = slots.acquire()
            assert got == (held < capacity)
            held += got
        elif held:
            slots.release()
            held -= 1
        assert slots.in_use == held <= capacity


def test_releasing_a_slot_never_taken_is_a_bug():
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        StreamSlots(2).release()


def test_long_questions_and_object_names_are_named():
    assert task_text_problem(Task.query("x" * 10), 10) is None
    assert "question is 11 characters; at most 10" in (task_text_problem(Task.query("x" * 11), 10) or "")
    assert "object name is 11" in (task_text_problem(Task.detect("y" * 11), 10) or "")
    assert task_text_problem(Task.caption(), 1) is None


def test_derived_limits_follow_the_frame_limit():
    settings = Settings(max_frame_bytes=1_000_000)
    assert 1_000_000 < settings.ws_max_size() < 1_010_000
    assert 1_000_000 < settings.upload_max_size() <= 1_000_000 + 64 * 1024
    assert Settings(max_ws_message_bytes=5000, max_upload_bytes=6000).ws_max_size() == 5000
    assert Settings(max_upload_bytes=6000).upload_max_size() == 6000


# --- BodySizeLimitMiddleware ----------------------------------------------------------------------

LIMIT = 1000


async def _echo_length(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


@pytest.fixture(scope="module")
def limited() -> Iterator[TestClient]:
    app = Starlette(routes=[Route("/upload", _echo_length, methods=["POST"])])
    seen: list[int] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        # Between the limit and the app: records how many body bytes the app was handed.
        async def counted() -> Any:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            return message

        await app(scope, counted, send)

    with TestClient(BodySizeLimitMiddleware(counting, max_bytes=LIMIT)) as client:
        client.seen = seen  # type: ignore[attr-defined]
        yield client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 3 * LIMIT), chunk=st.integers(1, 700), declared=st.booleans())
def test_bodies_over_the_limit_get_413_having_read_at_most_one_chunk_past_it(limited, size, chunk, declared):
    limited.seen.clear()
    body = b"x" * size
    if declared:
        response = limited.post("/upload", content=body)
    else:  # a generator has no length: sent chunked, as a streaming client would
        response = limited.post("/upload", content=(body[i : i + chunk] for i in range(0, size, chunk)))
    if size <= LIMIT:
        assert response.status_code == 200 and response.json() == {"received": size}
    else:
        assert response.status_code == 413
        assert response.json()["code"] == "upload_too_large" and str(LIMIT) in response.json()["detail"]
        assert sum(limited.seen) <= LIMIT + chunk  # the rest was never read
        if declared:
            assert sum(limited.seen) == 0  # refused from Content-Length alone


# --- the limits in the app ------------------------------------------------------------------------


def test_one_stream_too_many_is_told_why_and_closed_with_1013():
    with serve(max_streams=2) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as one, client.websocket_connect("/v1/stream") as two:
            recv(one), recv(two)
            # A stream takes its slot with its first frame (connecting alone holds none).
            for ws in (one, two):
                ws.send_bytes(pack(png((0, 0, 200)), seq=0))
                recv_until(ws, "caption")
            with client.websocket_connect("/v1/stream") as three:
                assert recv(three)["type"] == "ready"
                three.send_bytes(pack(png(RED), seq=0))
                error = recv(three)
                assert (error["type"], error["code"], error["seq"]) == ("error", "too_many_streams", 0)
                assert "CAMCAP_MAX_STREAMS" in error["message"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    recv(three)
                assert closed.value.code == 1013
                assert closed.value.reason == "Too many streams; try again later."
            # One-shot captions share the same slots: 503 with a time to come back.
            response = client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")})
            assert (response.status_code, response.json()["code"]) == (503, "too_many_streams")
            assert response.headers["retry-after"] == "5"
            # The streams already admitted are served as before.
            one.send_bytes(pack(png(RED), seq=1))
            assert recv_until(one, "caption")[0]["seq"] == 1
        # Their slots are free again once they leave.
        with client.websocket_connect("/v1/stream") as again:
            assert recv(again)["type"] == "ready"
        assert client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")}).status_code == 200
        assert client.app.state.stream_slots.in_use == 0  # type: ignore[attr-defined]


def test_a_refused_upload_frees_its_slot():
    with serve(max_streams=1) as client:
        wait_ready(client)
        for _ in range(3):
            bad = client.post("/v1/caption", files={"image": ("f.jpg", b"not an image", "image/jpeg")})
            assert bad.status_code == 400
        assert client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")}).status_code == 200


def test_an_upload_over_the_body_limit_is_413_before_the_model_sees_it():
    fake = FakeCaptioner()
    with serve(fake, max_upload_bytes=4096) as client:
        wait_ready(client)
        big = jpeg(size=(640, 480)) + b"\0" * 8192
        response = client.post("/v1/caption", files={"image": ("f.jpg", big, "image/jpeg")})
        assert (response.status_code, response.json()["code"]) == (413, "upload_too_large")
        assert "max_upload_bytes" in response.json()["detail"]
        chunked = client.post(
            "/v1/caption",
            content=(b"x" * 1024 for _ in range(16)),
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
        )
        assert chunked.status_code == 413
        assert fake.seen == []
        # Within the limit, all is as before.
        assert client.post("/v1/caption", files={"image": ("f.png", png(RED), "image/png")}).status_code == 200


def test_a_websocket_message_over_the_limit_is_refused_and_the_stream_goes_on():
    with serve(max_ws_message_bytes=2048) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(b"\xff\xd8\xff" + b"\0" * 4096)
            error = recv(ws)
            assert (error["code"], error["seq"]) == ("message_too_large", None)
            assert "max_ws_message_bytes" in error["message"]
            ws.send_bytes(pack(png(RED, size=(16, 16)), seq=3))
            assert recv_until(ws, "caption")[0]["seq"] == 3


def test_a_frame_over_the_pixel_limit_is_told_its_size_and_the_limit():
    with serve(max_frame_pixels=1000) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(RED, size=(64, 48)), seq=4))
            error = recv(ws)
            assert (error["seq"], error["code"]) == (4, "frame_too_large")
            assert error["message"] == (
                "The frame is 64x48 = 3072 pixels, over the limit of 1000; "
                "resize it before sending (the model's input_size is all it needs)."
            )


def test_a_config_message_may_be_exactly_as_long_as_the_limit():
    config = json.dumps({"type": "config", "task": "query", "question": "Is the door open?"})
    at_limit = config + " " * (ws_module.MAX_TEXT_MESSAGE - len(config))
    with serve() as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_text(at_limit + " ")
            error = recv(ws)
            assert error["code"] == "bad_message"
            assert error["message"] == (
                f"The text message is {ws_module.MAX_TEXT_MESSAGE + 1} characters; "
                f"a config message is at most {ws_module.MAX_TEXT_MESSAGE}."
            )
            ws.send_text(at_limit)  # accepted: the next caption answers the question
            ws.send_bytes(pack(png(RED), seq=1))
            caption = recv_until(ws, "caption")[0]
            assert (caption["seq"], caption["task"]) == (1, "query")


@pytest.mark.parametrize("field", ["question", "target"])
def test_questions_over_the_limit_are_refused_on_both_transports(field):
    task = "query" if field == "question" else "detect"
    with serve(max_question_chars=20) as client:
        wait_ready(client)
        response = client.post(
            "/v1/caption", files={"image": ("f.png", png(RED), "image/png")}, data={"task": task, field: "x" * 21}
        )
        assert (response.status_code, response.json()["code"]) == (422, "bad_message")
        assert "at most 20" in response.json()["detail"]
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_text(json.dumps({"type": "config", "task": task, field: "x" * 21}))
            error = recv(ws)
            assert error["code"] == "bad_message" and "at most 20" in error["message"]


def test_frames_over_the_rate_wait_instead_of_being_dropped():
    """6 frames at once, 2 per second with a burst of 2: the last is handled >= 2 s after the first.

    Only a lower bound on time: a slow machine makes the wait longer, never shorter.
    """
    fake = FakeCaptioner()
    with serve(fake, max_fps_per_stream=2) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            # Distinct colours, so no frame could be skipped as unchanged.
            colours = [(40 * i, 255 - 40 * i, 0) for i in range(6)]
            started = time.monotonic()
            for seq, colour in enumerate(colours):
                ws.send_bytes(pack(png(colour), seq=seq))
            answered = set()
            while 5 not in answered:
                event = recv(ws)
                assert event["type"] != "error", event
                if event["type"] in ("caption", "unchanged"):
                    answered.add(event["seq"])
            assert time.monotonic() - started >= 1.9
    assert (255 - 40 * 5) in {g for _, g, _ in fake.seen}  # the last frame reached the model


def test_a_client_that_does_not_read_is_not_read_either(monkeypatch):
    """Past MAX_BACKLOG unread events, the reader stops taking messages until the client catches up."""
    monkeypatch.setattr(ws_module, "MAX_BACKLOG", 3)
    monkeypatch.setattr(ws_module, "_BACKLOG_POLL_S", 0.001)

    class Socket:
        def __init__(self) -> None:
            self.sent = 0

        async def receive(self) -> dict[str, Any]:
            self.sent += 1
            if self.sent > 50:
                return {"type": "websocket.disconnect"}
            return {"type": "websocket.receive", "text": "{not json"}

    backlog_waits = 0
    real_sleep = ws_module.anyio.sleep

    async def sleep(seconds: float) -> None:
        nonlocal backlog_waits
        if seconds == ws_module._BACKLOG_POLL_S:
            backlog_waits += 1
        await real_sleep(seconds)

    monkeypatch.setattr(ws_module.anyio, "sleep", sleep)

    async def scenario() -> tuple[int, int]:
        session, socket = Session(), Socket()
        guard = StreamLimits(max_message_bytes=1 << 20, max_fps=30, max_question_chars=500)
        reader = asyncio.ensure_future(ws_module._read(socket, session, None, guard))  # type: ignore[arg-type]
        # The event that proves the reader stopped: it is waiting for the client to catch up.
        for _ in range(10_000):
            if backlog_waits >= 3 or reader.done():
                break
            await real_sleep(0.001)
        assert backlog_waits >= 3, "the reader never waited for the client to read its backlog"
        stalled_at = socket.sent
        while not reader.done():  # the client starts reading: the server reads again
            if not session.outbox.empty():
                session.outbox.get_nowait()
            await asyncio.sleep(0)
        return stalled_at, session.outbox.qsize()

    stalled_at, _ = asyncio.run(scenario())
    assert stalled_at == 3  # three errors unread: the fourth message is not taken


def test_limits_are_checked_before_any_frame_is_decoded(monkeypatch):
    calls = []
    original = ws_module.decode_image_off_loop

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return await original(*args, **kwargs)

    monkeypatch.setattr(ws_module, "decode_image_off_loop", spy)
    with serve(max_ws_message_bytes=2048) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(b"\0" * 4096)
            assert recv(ws)["code"] == "message_too_large"
    assert calls == []


class WatchedBudget(DecodeBudget):
    """The server's decode budget, recording the pixels each decode asks it for."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.asked: list[int] = []

    async def acquire(self, pixels: int) -> int:
        self.asked.append(pixels)
        return await super().acquire(pixels)


def test_a_streams_frames_wait_for_the_servers_decode_budget(monkeypatch):
    """Other clients' large frames hold the whole decode budget: a stream's frame waits for its
    pixels before it is decoded, and is captioned once they are given back."""
    monkeypatch.setattr("camcap.server.app.DecodeBudget", WatchedBudget)
    fake = FakeCaptioner()
    with serve(fake) as client:
        wait_ready(client)
        budget = client.app.state.decode_budget  # type: ignore[attr-defined]
        # Taken on the server's event loop, as the decodes of other clients take it.
        held = client.portal.call(budget.acquire, budget.capacity)  # type: ignore[union-attr]
        with client.websocket_connect("/v1/stream") as ws:
            recv(ws)
            ws.send_bytes(pack(png(RED, size=(64, 48)), seq=1))
            wait_for(lambda: len(budget.asked) == 2, "the frame to ask the decode budget for its pixels")
            assert budget.asked[1] == 64 * 48
            assert fake.seen == []  # it waits: all the pixels are taken
            client.portal.call(budget.release, held)  # type: ignore[union-attr]
            assert recv_until(ws, "caption")[0]["seq"] == 1
        assert budget.in_use == 0


def test_defaults_are_sane():
    defaults = Settings()
    assert (defaults.max_streams, defaults.max_fps_per_stream, defaults.max_question_chars) == (8, 30.0, 500)
    assert defaults.ws_max_size() >= defaults.max_frame_bytes
    assert defaults.upload_max_size() >= defaults.max_frame_bytes
    assert math.isclose(FrameRate(defaults.max_fps_per_stream).burst, 30.0)
