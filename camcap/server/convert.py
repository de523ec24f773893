"""Between the engine's records and the wire schema (`messages.py`), in both directions.

Transports call these so that the WebSocket, the HTTP API and later the subtitle writers give
the same fields the same meaning.
"""

from __future__ import annotations

import dataclasses

from camcap.config import Settings
from camcap.engine.events import FrameCaption, FrameError, FrameUnchanged
from camcap.engine.frames import FrameLimits
from camcap.engine.options import StreamOptions
from camcap.engine.timing import FrameTimings
from camcap.models.base import Caption, ModelInfo, Task, TaskKind
from camcap.server.messages import (
    BoxOut,
    CaptionEvent,
    CaptionResponse,
    ConfigMessage,
    ErrorEvent,
    LimitsOut,
    ModelInfoOut,
    PointOut,
    StageTimings,
    UnchangedEvent,
)


def frame_limits(settings: Settings) -> FrameLimits:
    """The per-frame limits the settings ask for."""
    return FrameLimits(max_bytes=settings.max_frame_bytes, max_pixels=settings.max_frame_pixels)


def limits_out(limits: FrameLimits) -> LimitsOut:
    return LimitsOut(max_frame_bytes=limits.max_bytes, max_frame_pixels=limits.max_pixels)


def model_info_out(info: ModelInfo) -> ModelInfoOut:
    return ModelInfoOut(
        name=info.name,
        backend=info.backend,
        device=info.device,
        dtype=info.dtype,
        tasks=[kind.value for kind in info.tasks],
        input_size=info.input_size,
        max_batch=info.max_batch,
        random_weights=info.random_weights,
        revision=info.revision,
        frames_sent_to=info.frames_sent_to,
        frames_leave_network=info.frames_leave_network,
        demo=info.demo,
    )


def task_from_config(config: ConfigMessage) -> Task:
    """The `Task` a config message asks for. Raises `ValueError` (e.g. a query without a question)."""
    return Task(TaskKind(config.task), length=config.length, question=config.question, target=config.target)


def stream_options_from_config(config: ConfigMessage, defaults: StreamOptions) -> StreamOptions:
    """The stream policies a config message asks for; a field it leaves out (None) keeps the server's."""
    return dataclasses.replace(
        defaults,
        change_threshold=defaults.change_threshold if config.change_threshold is None else config.change_threshold,
        cut_stale=defaults.cut_stale if config.cut_stale is None else config.cut_stale,
    )


def stage_timings(timings: FrameTimings) -> StageTimings:
    return StageTimings(
        receive_ms=_ms_or_none(timings.receive_ms),
        queue_ms=_ms(timings.queue_ms),
        image_decode_ms=_ms(timings.image_decode_ms),
        preprocess_ms=_ms(timings.preprocess_ms),
        first_token_ms=_ms(timings.first_token_ms),
        decode_ms=_ms(timings.decode_ms),
        encode_ms=_ms_or_none(timings.encode_ms),
        inference_ms=_ms(timings.inference_ms),
        total_ms=_ms(timings.total_ms),
        tokens=timings.tokens,
    )


def caption_event(event: FrameCaption, info: ModelInfo) -> CaptionEvent:
    return CaptionEvent(
        seq=event.seq,
        text=event.caption.text,
        task=event.caption.task.kind.value,
        model=info.name,
        random_weights=info.random_weights,
        captured_at=event.captured_at,
        skipped=event.skipped,
        unchanged=event.unchanged,
        timings=stage_timings(event.timings),
        boxes=_boxes(event.caption),
        points=_points(event.caption),
    )


def caption_response(event: FrameCaption, info: ModelInfo) -> CaptionResponse:
    return CaptionResponse(
        caption=event.caption.text,
        model=info.name,
        task=event.caption.task.kind.value,
        random_weights=info.random_weights,
        inference_ms=_ms(event.timings.inference_ms),
        timings=stage_timings(event.timings),
        boxes=_boxes(event.caption),
        points=_points(event.caption),
    )


def unchanged_event(event: FrameUnchanged) -> UnchangedEvent:
    return UnchangedEvent(
        seq=event.seq,
        reference_seq=event.reference_seq,
        difference=_ms(event.difference),  # two decimals, like the timings
        captured_at=event.captured_at,
    )


def error_event(event: FrameError) -> ErrorEvent:
    return ErrorEvent(seq=event.seq, code=event.code.value, message=event.message)


def _boxes(caption: Caption) -> list[BoxOut]:
    return [BoxOut(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max) for b in caption.boxes]


def _points(caption: Caption) -> list[PointOut]:
    return [PointOut(x=p.x, y=p.y) for p in caption.points]


def _ms(value: float) -> float:
    # Microseconds are noise at these scales and only bloat every message.
    return round(value, 2)


def _ms_or_none(value: float | None) -> float | None:
    return None if value is None else _ms(value)
