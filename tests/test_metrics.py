"""`GET /metrics` (camcap.server.metrics): what the server counts, and who may read it."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from camcap.engine.events import FrameCaption, FrameError, FrameUnchanged, TokenDelta
from camcap.engine.timing import FrameTimings
from camcap.models.base import Caption, Task, Timings
from camcap.server.host import ModelStatus
from camcap.server.messages import ErrorCode
from camcap.server.metrics import ServerMetrics
from tests.fakes import FakeCaptioner
from tests.test_access import TOKEN, app_client, bearer, wait_ready_with_token
from tests.test_server import BLUE, RED, pack, png, recv_until, serve, wait_ready


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


def timings(receive_ms: float | None = 3.0, tokens: int = 4) -> FrameTimings:
    return FrameTimings(
        receive_ms=receive_ms,
        queue_ms=2.0,
        image_decode_ms=1.0,
        preprocess_ms=5.0,
        first_token_ms=20.0,
        decode_ms=80.0,
        encode_ms=None,
        inference_ms=100.0,
        total_ms=110.0,
        tokens=tokens,
    )


class FakeHost:
    """What `render` reads of a ModelHost: no model loaded."""

    status = ModelStatus.LOADING
    info = None
    scheduler = None


def scrape(metrics: ServerMetrics) -> dict:
    return samples(metrics.render(FakeHost()).decode())  # type: ignore[arg-type]


def caption(seq: int = 1, skipped: int = 0, **kwargs) -> FrameCaption:
    model = Timings(preprocess_ms=5.0, first_token_ms=20.0, decode_ms=80.0, total_ms=105.0, tokens=4)
    text = Caption(0, "a cup", Task.caption(), model)
    return FrameCaption(seq, text, timings(**kwargs), skipped=skipped, captured_at=None)


def test_every_outcome_of_a_frame_is_counted():
    metrics = ServerMetrics()
    metrics.observe_event(TokenDelta(1, "a"))
    metrics.observe_event(caption(1, skipped=2, tokens=7))
    metrics.observe_event(FrameUnchanged(2, reference_seq=1, difference=0.01, captured_at=None))
    metrics.observe_event(FrameError(3, ErrorCode.MODEL_ERROR, "out of memory"))
    metrics.observe_event(FrameError(None, ErrorCode.SERVER_CLOSING, "bye"))  # the stream's, not a frame's

    got = scrape(metrics)
    assert value(got, "camcap_frames_total", outcome="captioned") == 1
    assert value(got, "camcap_frames_total", outcome="replaced") == 2
    assert value(got, "camcap_frames_total", outcome="unchanged") == 1
    assert value(got, "camcap_frames_total", outcome="failed") == 1
    assert value(got, "camcap_frame_errors_total", code="model_error") == 1
    assert ("camcap_frame_errors_total", (("code", "server_closing"),)) not in got
    assert value(got, "camcap_tokens_total") == 7
    assert value(got, "camcap_model_ready") == 0


def test_each_stage_of_a_captioned_frame_is_a_histogram_in_seconds():
    metrics = ServerMetrics()
    metrics.observe_event(caption(receive_ms=None))
    metrics.observe_event(caption(receive_ms=-40.0))  # the client's clock runs ahead

    got = scrape(metrics)
    assert value(got, "camcap_stage_seconds_count", stage="inference") == 2
    assert value(got, "camcap_stage_seconds_sum", stage="inference") == pytest.approx(0.2)
    assert value(got, "camcap_stage_seconds_sum", stage="first_token") == pytest.approx(0.04)
    assert value(got, "camcap_stage_seconds_count", stage="receive") == 1  # None is not a duration
    assert value(got, "camcap_stage_seconds_sum", stage="receive") == 0  # nor is a negative one
    assert value(got, "camcap_stage_seconds_count", stage="encode") == 0


def test_batches_are_counted_by_size():
    metrics = ServerMetrics()
    metrics.observe_batch(1, 0.5)
    metrics.observe_batch(4, 1.5)

    got = scrape(metrics)
    assert value(got, "camcap_batch_size_count") == 2
    assert value(got, "camcap_batch_size_sum") == 5
    assert value(got, "camcap_batch_size_bucket", le="1.0") == 1
    assert value(got, "camcap_batch_seconds_sum") == pytest.approx(2.0)


def test_an_unknown_event_is_a_bug_not_a_silent_miss():
    with pytest.raises(TypeError, match="Unknown scheduler event"):
        ServerMetrics().observe_event("a caption")  # type: ignore[arg-type]


def test_apps_never_share_counters():
    first, second = ServerMetrics(), ServerMetrics()
    first.observe_event(caption())
    assert value(scrape(second), "camcap_frames_total", outcome="captioned") == 0


def test_the_server_counts_what_its_clients_were_sent():
    with serve(FakeCaptioner()) as client:
        wait_ready(client)
        assert client.post("/v1/caption", files={"image": ("red.png", png(RED), "image/png")}).status_code == 200
        with client.websocket_connect("/v1/stream") as ws:
            recv_until(ws, "ready")
            ws.send_bytes(pack(png(BLUE), seq=0))
            recv_until(ws, "caption")
            ws.send_bytes(pack(png(BLUE), seq=1))  # the same picture: change gating answers it
            recv_until(ws, "unchanged")
            response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert value(got, "camcap_frames_total", outcome="captioned") == 2
    assert value(got, "camcap_frames_total", outcome="unchanged") == 1
    assert value(got, "camcap_batch_size_count") == 2
    assert value(got, "camcap_stage_seconds_count", stage="total") == 2
    assert value(got, "camcap_tokens_total") > 0
    assert value(got, "camcap_model_ready") == 1
    assert value(got, "camcap_streams_open") == 1  # the socket was still open when scraped
    info = {labels: sample for (name, labels), sample in got.items() if name == "camcap_model_info"}
    assert list(info) == [(("backend", "fake"), ("device", "cpu"), ("dtype", "float32"), ("spec", "fake"))]


def test_metrics_need_the_token_beyond_loopback():
    with app_client(FakeCaptioner(), host="0.0.0.0", token=TOKEN, https=False) as client:
        wait_ready_with_token(client)
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer("wrong-token-0123456789abcdef")).status_code == 401
        assert client.get("/metrics", headers=bearer()).status_code == 200
