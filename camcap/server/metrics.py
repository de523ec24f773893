"""`GET /metrics`: every stage of every frame, in Prometheus' text format.

The page shows one stream's timings as they happen; this shows the whole server over time, for a
dashboard or an alert: how long frames wait, decode and run, how big the batches are, how many
frames change gating saved and how many were replaced by newer ones.

Each app has its own `CollectorRegistry` (not prometheus-client's global one), so that two apps in
one process (tests, the bench) never share counters. Labels are bounded (a stage, an outcome, an
error code): nothing per stream or per client, and no caption text, so the metrics say how busy
the server is, never what the cameras see. The route sits behind the same access rules as the
rest of the API: beyond loopback, a scraper sends the token (`Authorization: Bearer ...`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from camcap.engine.events import FrameCaption, FrameError, FrameUnchanged, StreamEvent, TokenDelta
from camcap.engine.timing import FrameTimings
from camcap.server.host import ModelHost, ModelStatus

router = APIRouter()

# Seconds, from a fast GPU's hand-off (1 ms) to a CPU caption of a long text (a minute).
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 32)
# FrameTimings fields exported as stages, in the order a frame meets them.
_STAGES = (
    "receive",
    "queue",
    "image_decode",
    "preprocess",
    "encode",
    "first_token",
    "decode",
    "inference",
    "total",
)


class ServerMetrics:
    """The counters of one app. `observe_event` runs on the event loop, `observe_batch` on the model
    worker thread; prometheus-client's metrics are thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter(
            "camcap_frames",
            "Frames by what became of them: captioned, unchanged (change gating answered them), "
            "replaced (a newer frame of the stream took their slot), failed.",
            ["outcome"],
            registry=r,
        )
        self.errors = Counter(
            "camcap_frame_errors", "Frames that ended in an error, by error code.", ["code"], registry=r
        )
        self.client_clock_rejected = Counter(
            "camcap_client_clock_rejected",
            "Frames whose client sent_at put their receive time outside 0..60 s: not observed as a duration.",
            registry=r,
        )
        self.tokens = Counter("camcap_tokens", "Tokens generated for captions that were delivered.", registry=r)
        self.stages = Histogram(
            "camcap_stage_seconds",
            "Time per stage of each captioned frame (receive needs the client's sent_at).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram("camcap_batch_size", "Frames per model batch.", buckets=_BATCH_SIZES, registry=r)
        self.batch_seconds = Histogram(
            "camcap_batch_seconds", "Model time per batch.", buckets=_STAGE_BUCKETS, registry=r
        )
        self.streams = Gauge("camcap_streams_open", "Streams on the scheduler (live and one-shot).", registry=r)
        self.ready = Gauge("camcap_model_ready", "1 once the model is loaded and serving, else 0.", registry=r)
        self.model = Info("camcap_model", "The model being served.", registry=r)
        for outcome in ("captioned", "unchanged", "replaced", "failed"):
            self.frames.labels(outcome)  # present at 0 from the start, so rates work at once
        for stage in _STAGES:
            self.stages.labels(stage)

    def observe_event(self, event: StreamEvent) -> None:
        """Count one event the scheduler delivered to a stream."""
        if isinstance(event, FrameCaption):
            self.frames.labels("captioned").inc()
            if event.skipped:
                self.frames.labels("replaced").inc(event.skipped)
            self.tokens.inc(event.timings.tokens)
            self._observe_timings(event.timings)
        elif isinstance(event, FrameUnchanged):
            self.frames.labels("unchanged").inc()
        elif isinstance(event, FrameError) and event.seq is not None:
            self.frames.labels("failed").inc()
            self.errors.labels(event.code.value).inc()
        elif not isinstance(event, TokenDelta | FrameError):
            raise TypeError(f"Unknown scheduler event {event!r}")

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one batch the model ran."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self, host: ModelHost) -> bytes:
        """The text a scrape gets, with the host's current state."""
        self.ready.set(1 if host.status is ModelStatus.READY else 0)
        self.streams.set(host.scheduler.stream_count if host.scheduler is not None else 0)
        if host.info is not None:
            info = host.info
            labels = {"spec": host.settings.model, "backend": info.backend, "device": info.device, "dtype": info.dtype}
            self.model.info(labels)
        return generate_latest(self.registry)

    def _observe_timings(self, timings: FrameTimings) -> None:
        for stage in _STAGES:
            milliseconds = getattr(timings, f"{stage}_ms")
            if milliseconds is not None:
                # A client clock ahead of the server's makes `receive` negative: not a duration.
                self.stages.labels(stage).observe(max(0.0, milliseconds) / 1000.0)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    """Every stage of every frame, batches, streams and the model, for Prometheus."""
    server_metrics: ServerMetrics = request.app.state.metrics
    return Response(server_metrics.render(request.app.state.host), media_type=CONTENT_TYPE_LATEST)
