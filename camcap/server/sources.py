"""Live sources in the server: `camcap serve --source NAME=URL` captions them continuously.

`SourceHub` starts one `LiveSource` per configured source once the model is ready, on the same
scheduler as the page's streams, and fans their events out to WebSocket subscribers. Routes:
`GET /v1/sources` (status, counts and last caption of each), `GET /v1/sources/{name}/snapshot.jpg`
(the newest frame) and `WS /v1/sources/stream` (send `{"type": "config", "sources": [...]}`,
receive `source_caption`, `source_token`, `source_up` / `source_down` events). They sit behind the
same access rules as the rest of the API, and never show a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket

from camcap.alerts.engine import Alert
from camcap.config import Settings
from camcap.engine.events import Frame, FrameCaption, FrameUnchanged, StreamEvent, TokenDelta
from camcap.engine.scheduler import Scheduler
from camcap.models.base import Task
from camcap.outputs.record import CaptionEvent
from camcap.server.alerts import AlertHub, alert_event
from camcap.server.host import ModelHost, ModelStatus
from camcap.server.http import ApiError
from camcap.server.messages import ErrorCode, ErrorEvent, ErrorResponse
from camcap.server.messages import describe_validation_error as describe
from camcap.server.source_messages import (
    RouteNotFound,
    SourceCaptionEvent,
    SourceCaptionOut,
    SourceOut,
    SourcesResponse,
    SourceStatusEvent,
    SourceTokenEvent,
    SubscribedEvent,
    SubscribeMessage,
)
from camcap.sources.live import LiveSource
from camcap.sources.reader import ReaderOptions, SourceChange, SourceState, reader_options_of
from camcap.sources.spec import SourceSpec, parse_sources

logger = logging.getLogger(__name__)
router = APIRouter()

# Events a subscriber may have unread before new ones are dropped for it (a slow client never
# holds the sources back, and never grows the server's memory).
MAX_UNREAD = 256
_MAX_TEXT_MESSAGE = 16 * 1024


class SourceHub:
    """The server's live sources: started when the model is ready, stopped with the app."""

    def __init__(
        self,
        specs: list[SourceSpec],
        host: ModelHost,
        reader_options: ReaderOptions | None = None,
        alerts: AlertHub | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self._reader_options = reader_options
        self.alerts = alerts
        self.sources: dict[str, LiveSource] = {}
        self._host = host
        self._subscribers: dict[asyncio.Queue[BaseModel], frozenset[str] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._caption_seq: dict[str, int] = {}  # the frame counter of each source's latest caption
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Settings, host: ModelHost, alerts: AlertHub | None = None) -> SourceHub:
        """Raises `CamcapError` for a source that cannot be used as written (before a socket opens)."""
        # A file is a demo source: played at its own rate, looping.
        texts = [source.get_secret_value() for source in settings.sources]
        return cls(parse_sources(texts, realtime=True, loop=True), host, reader_options_of(settings), alerts)

    def start(self) -> None:
        """Start the sources once the model is ready. Call on the event loop."""
        if self.alerts is not None:
            self.alerts.listen(self._alert)
        if self.specs:
            self._task = asyncio.create_task(self._run(), name="camcap-sources")

    async def aclose(self) -> None:
        self._closing = True
        for source in self.sources.values():
            source.stop()
        if self._task is not None:
            if not self.sources:
                self._task.cancel()  # still waiting for the model: nothing to stop gracefully
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await self._host.wait_settled()
        if self._closing:
            return
        scheduler = self._host.scheduler
        if self._host.status is not ModelStatus.READY or scheduler is None:
            logger.error("Live sources are not started: the model did not load.")
            return
        for name, spec in self.specs.items():
            self.sources[name] = LiveSource(
                spec,
                scheduler,
                Task.caption(),
                on_change=self._changed,
                on_event=lambda event, name=name: self._event(name, event),  # type: ignore[misc]
                on_caption=self._caption,
                reader_options=self._reader_options,
                on_submit=lambda frame, name=name, scheduler=scheduler: self._submitted(scheduler, name, frame),  # type: ignore[misc]
            )
            logger.info("Captioning source %s", spec)
        results = await asyncio.gather(*(source.run() for source in self.sources.values()), return_exceptions=True)
        for name, result in zip(self.sources, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                logger.error("Source %s stopped: %s", name, result)

    # --- what the routes read ------------------------------------------------------------------

    def describe(self) -> list[SourceOut]:
        return [self._describe(spec) for spec in self.specs.values()]

    def _describe(self, spec: SourceSpec) -> SourceOut:
        source = self.sources.get(spec.name)
        if source is None:
            status, error, counters, stats, last = "waiting", None, None, None, None
        else:
            status, error = source.state.value, source.reader.error
            counters, stats, last = source.counters, source.reader.stats, source.last_caption
        return SourceOut(
            name=spec.name,
            url=spec.display_url,
            kind=spec.kind,
            status=status,  # type: ignore[arg-type]
            error=error,
            last_caption=None if last is None else _caption_out(last),
            frames_read=stats.frames_read if stats else 0,
            captioned=counters.captioned if counters else 0,
            reconnects=stats.reconnects if stats else 0,
            decode_errors=stats.decode_errors if stats else 0,
        )

    async def snapshot(self, name: str) -> bytes | None:
        """The newest frame of source `name` as JPEG, or None before its first frame."""
        source = self.sources.get(name)
        latest = source.reader.latest() if source is not None else None
        if latest is None:
            return None

        def encode() -> bytes:
            from camcap.sources.convert import frame_to_image

            image = frame_to_image(latest.frame, max(latest.frame.width, latest.frame.height), latest.rotation)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            return buffer.getvalue()

        return await anyio.to_thread.run_sync(encode)

    # --- subscribers ---------------------------------------------------------------------------

    def subscribe(self, names: frozenset[str] | None) -> asyncio.Queue[BaseModel]:
        queue: asyncio.Queue[BaseModel] = asyncio.Queue(MAX_UNREAD)
        self._subscribers[queue] = names
        return queue

    def resubscribe(self, queue: asyncio.Queue[BaseModel], names: frozenset[str] | None) -> None:
        self._subscribers[queue] = names

    def unsubscribe(self, queue: asyncio.Queue[BaseModel]) -> None:
        self._subscribers.pop(queue, None)

    def _publish(self, source: str, message: BaseModel) -> None:
        for queue, names in self._subscribers.items():
            if names is None or source in names:
                with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses events, nobody waits
                    queue.put_nowait(message)

    def _changed(self, change: SourceChange) -> None:
        kind = {SourceState.UP: "source_up", SourceState.ENDED: "source_ended"}.get(change.state, "source_down")
        self._publish(
            change.source,
            SourceStatusEvent(
                type=kind,  # type: ignore[arg-type]
                source=change.source,
                reason=change.reason,
                error=change.error,
                retry_in_s=change.retry_in_s,
            ),
        )

    def _submitted(self, scheduler: Scheduler, name: str, frame: Frame) -> None:
        if self.alerts is not None:
            self.alerts.submitted(scheduler, name, frame)

    def _alert(self, alert: Alert) -> None:
        if alert.camera in self.specs:
            self._publish(alert.camera, alert_event(alert))

    def _event(self, name: str, event: StreamEvent) -> None:
        if self.alerts is not None and isinstance(event, FrameUnchanged):
            self.alerts.engine.unchanged(name)  # its last caption stands, for the match rules
        if isinstance(event, TokenDelta):
            self._publish(name, SourceTokenEvent(source=name, seq=event.seq, text=event.text))
        elif isinstance(event, FrameCaption):
            self._caption_seq[name] = event.seq  # the caption itself follows, through _caption

    def _caption(self, caption: CaptionEvent) -> None:
        name = caption.source or ""
        out = _caption_out(caption)
        self._publish(name, SourceCaptionEvent(source=name, seq=self._caption_seq.get(name, 0), **out.model_dump()))
        if self.alerts is not None:  # after the caption, so an alert follows the caption that caused it
            self.alerts.engine.caption(name, caption.text)


def _caption_out(caption: CaptionEvent) -> SourceCaptionOut:
    record = caption.live_record()
    return SourceCaptionOut(
        at=record["at"],
        text=caption.text,
        task=caption.task,
        model=caption.model,
        frame_age_ms=record["frame_age_ms"] or 0.0,
        inference_ms=record["inference_ms"] or 0.0,
    )


class SourceCollector(Collector):
    """Per-source counters for `GET /metrics`: frames read, captioned, reconnects, decode errors,
    and whether each is up. Labelled by source name only (configured, bounded, never a URL)."""

    def __init__(self, hub: SourceHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families = {
            "frames_read": CounterMetricFamily(
                "camcap_source_frames_read", "Frames decoded per source.", labels=["source"]
            ),
            "captioned": CounterMetricFamily("camcap_source_captioned", "Captions per source.", labels=["source"]),
            "reconnects": CounterMetricFamily(
                "camcap_source_reconnects", "Reconnect attempts per source.", labels=["source"]
            ),
            "decode_errors": CounterMetricFamily(
                "camcap_source_decode_errors", "Packets that failed to decode, per source.", labels=["source"]
            ),
        }
        up = GaugeMetricFamily("camcap_source_up", "1 while a source delivers frames, else 0.", labels=["source"])
        for out in self.hub.describe():
            for field, family in families.items():
                family.add_metric([out.name], getattr(out, field))
            up.add_metric([out.name], 1.0 if out.status == "up" else 0.0)
        yield from families.values()
        yield up


def install(hub: SourceHub, registry: CollectorRegistry) -> None:
    """Export the hub's counters on the app's metrics registry."""
    registry.register(SourceCollector(hub))


# --- routes ------------------------------------------------------------------------------------


def _hub(request: Request | WebSocket) -> SourceHub:
    hub: SourceHub = request.app.state.sources
    return hub


@router.get("/v1/sources", response_model=SourcesResponse)
async def list_sources(request: Request) -> SourcesResponse:
    """The live sources this server captions (`camcap serve --source`), with status and last caption."""
    return SourcesResponse(sources=_hub(request).describe())


@router.get(
    "/v1/sources/{name}/snapshot.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The newest frame of the source, as JPEG."},
        # A name no route can hold (a slash, a line break) gets the router's own 404 body.
        404: {"model": ErrorResponse | RouteNotFound},
        503: {"model": ErrorResponse},
    },
)
async def snapshot(request: Request, name: str) -> Response:
    """The newest frame of a source, full size, as JPEG."""
    hub = _hub(request)
    if name not in hub.specs:
        known = ", ".join(hub.specs) or "none (start the server with --source NAME=URL)"
        raise ApiError(404, ErrorCode.UNKNOWN_SOURCE, f"No source is named {name!r}; the sources are: {known}.")
    data = await hub.snapshot(name)
    if data is None:
        detail = f"Source {name!r} has not delivered a frame yet; see GET /v1/sources for its status."
        raise ApiError(503, ErrorCode.NOT_READY, detail, {"Retry-After": "2"})
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def sources_endpoint(websocket: WebSocket) -> None:
    """`WS /v1/sources/stream`: subscribe with a config message, then receive source events."""
    hub = _hub(websocket)
    await websocket.accept()
    queue = hub.subscribe(frozenset())  # nothing until the client says what it wants
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_send_events, websocket, queue, tasks.cancel_scope)
            await _read_configs(websocket, hub, queue)
            tasks.cancel_scope.cancel()
    finally:
        hub.unsubscribe(queue)


async def _send_events(websocket: WebSocket, queue: asyncio.Queue[BaseModel], scope: anyio.CancelScope) -> None:
    try:
        while True:
            message = await queue.get()
            await websocket.send_text(message.model_dump_json(exclude_none=False))
    except Exception as exc:  # the client went away mid-send
        logger.debug("Sources stream send failed: %s", exc)
    scope.cancel()


async def _read_configs(websocket: WebSocket, hub: SourceHub, queue: asyncio.Queue[BaseModel]) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        reply = _subscribe(hub, queue, text) if text is not None else _bad("Send a JSON config message, not bytes.")
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(reply)


def _subscribe(hub: SourceHub, queue: asyncio.Queue[BaseModel], text: str) -> BaseModel:
    if len(text) > _MAX_TEXT_MESSAGE:
        return _bad(f"The message is {len(text)} characters; a config message is at most {_MAX_TEXT_MESSAGE}.")
    try:
        config = SubscribeMessage.model_validate(json.loads(text))
    except (json.JSONDecodeError, RecursionError) as exc:
        return _bad(f'Not JSON ({exc}); expected e.g. {{"type": "config", "sources": ["door"]}}.')
    except ValidationError as exc:
        return _bad(f'Invalid config: {describe(exc)}; expected e.g. {{"type": "config", "sources": ["door"]}}.')
    names = None if config.sources is None else frozenset(config.sources)
    unknown = sorted((names or frozenset()) - set(hub.specs))
    if unknown:
        known = ", ".join(hub.specs) or "none"
        return _bad(f"Unknown source {unknown[0]!r}; the sources are: {known}.")
    hub.resubscribe(queue, names)
    return SubscribedEvent(sources=sorted(hub.specs if names is None else names))


def _bad(message: str) -> ErrorEvent:
    return ErrorEvent(code=ErrorCode.BAD_MESSAGE.value, message=message)
