"""Engine records <-> the wire schema: camcap.server.convert.

Every field a transport sends is checked here by value, so that a field dropped, swapped or left
at its default fails a test (the audit found `skipped=0` surviving every server test). The last
test follows the `skipped` count through the real WebSocket route.
"""

from __future__ import annotations

import pytest

from camcap.config import Settings
from camcap.engine.events import FrameCaption, FrameError, FrameUnchanged
from camcap.engine.frames import FrameLimits
from camcap.engine.options import StreamOptions
from camcap.engine.timing import FrameTimings
from camcap.models.base import Box, Caption, ModelInfo, Point, Task, TaskKind, Timings
from camcap.server import convert
from camcap.server.messages import ConfigMessage, ErrorCode
from tests.fakes import FakeCaptioner
from tests.test_server import pack, png, recv, recv_until, serve, wait_for, wait_ready

INFO = ModelInfo(
    name="random:blip-tiny",
    backend="transformers",
    device="cuda:1",
    dtype="bfloat16",
    tasks=(TaskKind.CAPTION, TaskKind.DETECT),
    input_size=384,
    max_batch=3,
    random_weights=True,
    revision="abc123",
    # Not a combination a real backend reports: values other than the defaults, so a dropped field shows.
    frames_sent_to="https://vlm.example.com",
    frames_leave_network=True,
    demo=True,
)

# Distinct values with more than two decimals, so a swapped or unrounded field shows.
TIMINGS = FrameTimings(
    receive_ms=1.2345,
    queue_ms=2.3456,
    image_decode_ms=3.4567,
    preprocess_ms=4.5678,
    first_token_ms=5.6789,
    decode_ms=6.7891,
    encode_ms=7.8912,
    inference_ms=8.9123,
    total_ms=9.1234,
    tokens=11,
)
MODEL_TIMINGS = Timings(preprocess_ms=0.0, first_token_ms=0.0, decode_ms=0.0, total_ms=0.0, tokens=11)


def detection() -> FrameCaption:
    caption = Caption(
        index=0,
        text="a cup",
        task=Task.detect("cup"),
        timings=MODEL_TIMINGS,
        boxes=(Box(0.1, 0.2, 0.3, 0.4),),
        points=(Point(0.5, 0.6),),
    )
    return FrameCaption(seq=7, caption=caption, timings=TIMINGS, skipped=3, captured_at=1234.5, unchanged=2)


def test_a_caption_event_carries_every_field_of_the_caption():
    event = convert.caption_event(detection(), INFO)
    assert event.model_dump() == {
        "type": "caption",
        "seq": 7,
        "text": "a cup",
        "task": "detect",
        "model": "random:blip-tiny",
        "random_weights": True,
        "captured_at": 1234.5,
        "skipped": 3,
        "unchanged": 2,
        "timings": {
            "receive_ms": 1.23,
            "queue_ms": 2.35,
            "image_decode_ms": 3.46,
            "preprocess_ms": 4.57,
            "first_token_ms": 5.68,
            "decode_ms": 6.79,
            "encode_ms": 7.89,
            "inference_ms": 8.91,
            "total_ms": 9.12,
            "tokens": 11,
        },
        "boxes": [{"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}],
        "points": [{"x": 0.5, "y": 0.6}],
    }


def test_timings_the_client_cannot_know_stay_none():
    timings = FrameTimings(**{**TIMINGS.__dict__, "receive_ms": None, "encode_ms": None})
    out = convert.stage_timings(timings)
    assert (out.receive_ms, out.encode_ms, out.queue_ms) == (None, None, 2.35)


def test_an_http_caption_response_carries_every_field():
    response = convert.caption_response(detection(), INFO)
    dumped = response.model_dump()
    assert dumped == {
        **dumped,
        "caption": "a cup",
        "model": "random:blip-tiny",
        "task": "detect",
        "random_weights": True,
        "inference_ms": 8.91,
        "boxes": [{"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}],
        "points": [{"x": 0.5, "y": 0.6}],
    }
    assert dumped["timings"] == convert.caption_event(detection(), INFO).model_dump()["timings"]


def test_unchanged_and_error_events_carry_their_fields():
    unchanged = convert.unchanged_event(FrameUnchanged(seq=9, reference_seq=4, difference=0.123456, captured_at=55.5))
    assert unchanged.model_dump() == {
        "type": "unchanged",
        "seq": 9,
        "reference_seq": 4,
        "difference": 0.12,
        "captured_at": 55.5,
    }
    error = convert.error_event(FrameError(seq=3, code=ErrorCode.SUPERSEDED, message="cut short"))
    assert error.model_dump() == {"type": "error", "seq": 3, "code": "superseded", "message": "cut short"}


def test_the_model_description_carries_every_field():
    assert convert.model_info_out(INFO).model_dump() == {
        "name": "random:blip-tiny",
        "backend": "transformers",
        "device": "cuda:1",
        "dtype": "bfloat16",
        "tasks": ["caption", "detect"],
        "input_size": 384,
        "max_batch": 3,
        "random_weights": True,
        "revision": "abc123",
        "frames_sent_to": "https://vlm.example.com",
        "frames_leave_network": True,
        "demo": True,
    }


def test_frame_limits_come_from_the_settings_and_go_out_unchanged():
    limits = convert.frame_limits(Settings(max_frame_bytes=1234, max_frame_pixels=5678))
    assert limits == FrameLimits(max_bytes=1234, max_pixels=5678)
    assert convert.limits_out(limits).model_dump() == {"max_frame_bytes": 1234, "max_frame_pixels": 5678}


@pytest.mark.parametrize(
    ("config", "task"),
    [
        ({"task": "caption", "length": "short"}, Task.caption("short")),
        ({"task": "query", "question": "Is the door open?"}, Task.query("Is the door open?")),
        ({"task": "detect", "target": "cup"}, Task.detect("cup")),
        ({"task": "point", "target": "cup"}, Task.point("cup")),
    ],
)
def test_a_config_message_becomes_its_task(config, task):
    assert convert.task_from_config(ConfigMessage.model_validate({"type": "config", **config})) == task


def test_a_config_without_policies_keeps_the_servers_and_one_with_them_overrides_them():
    defaults = StreamOptions(change_threshold=0.5, max_unchanged_s=7, cut_stale=True, stale_after_ms=250)
    assert convert.stream_options_from_config(ConfigMessage(), defaults) == defaults
    chosen = convert.stream_options_from_config(ConfigMessage(change_threshold=0, cut_stale=False), defaults)
    assert chosen == StreamOptions(change_threshold=0, max_unchanged_s=7, cut_stale=False, stale_after_ms=250)


def test_the_skipped_count_reaches_the_websocket_client():
    """Frames replaced while the model is busy are counted in the next caption on the wire."""
    fake = FakeCaptioner(gated=True)
    with serve(fake) as client:
        wait_ready(client)
        with client.websocket_connect("/v1/stream") as ws:
            assert recv(ws)["type"] == "ready"
            ws.send_bytes(pack(png((200, 0, 0)), seq=0))
            wait_for(lambda: fake.started == 1, "the model to start frame 0")
            for seq, colour in ((1, (0, 200, 0)), (2, (0, 0, 200)), (3, (200, 200, 0))):
                ws.send_bytes(pack(png(colour), seq=seq))
            # The reader handles messages in order, so the answer to this one proves that frames
            # 1 to 3 went into the slot (each replacing the one before) while frame 0 was captioned.
            ws.send_text("{}")
            assert recv(ws)["code"] == "bad_message"
            fake.allow(2)
            first, _ = recv_until(ws, "caption")
            second, _ = recv_until(ws, "caption")
            assert (first["seq"], first["skipped"]) == (0, 0)
            assert (second["seq"], second["skipped"]) == (3, 2)
