"""`WS /v1/stream`: the live channel. Binary frames and JSON configs in, JSON events out.

Each connection runs three tasks: a reader (frames and configs from the client), an activator
(waits for the model, then sends `ready`), and a writer (drains the session's outbox to the
socket, the only place that sends). A bad message gets an `error` event and the stream goes on.
"""

from __future__ import annotations

import json
import logging

import anyio
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket

from camcap import __version__
from camcap.engine.events import Frame, FrameCaption, FrameError, FrameUnchanged, TokenDelta
from camcap.engine.frames import (
    FrameLimits,
    FrameTooLargeError,
    InvalidFrameError,
    decode_image_off_loop,
    split_frame,
)
from camcap.engine.timing import monotonic, receive_ms, wall_ms
from camcap.errors import InvalidImageError, UnsupportedTaskError
from camcap.server import convert
from camcap.server.alerts import PageAlerts
from camcap.server.host import ModelHost, ModelStatus
from camcap.server.limits import FrameRate, StreamLimits, StreamSlot, task_text_problem
from camcap.server.messages import ConfigMessage, ErrorCode, ErrorEvent, ReadyEvent, TokenEvent
from camcap.server.messages import describe_validation_error as describe
from camcap.server.session import MAX_UNREAD_TOKENS, CloseSocket, Outgoing, Session, SessionState

logger = logging.getLogger(__name__)

# A config message is a few hundred bytes; parsing megabytes of JSON would stall the loop.
MAX_TEXT_MESSAGE = 16 * 1024
# Events waiting for a client that does not read them: past this, its messages are not read
# either (TCP holds the client back), so a client cannot grow the server's memory by sending
# messages that each earn a reply it never collects.
MAX_BACKLOG = MAX_UNREAD_TOKENS
_BACKLOG_POLL_S = 0.05


async def stream_endpoint(websocket: WebSocket) -> None:
    """Serve one client for as long as its socket is open."""
    app_state = websocket.app.state
    host: ModelHost = app_state.host
    limits: FrameLimits = app_state.frame_limits
    guard: StreamLimits = app_state.stream_limits
    await websocket.accept()
    # No slot yet: it is taken by the first frame (a socket that sends nothing costs no model time).
    slot = StreamSlot(app_state.stream_slots, app_state.settings.stream_idle_s)
    session = Session(
        app_state.settings.stream_options(), slot=slot, metrics=app_state.metrics, decode_budget=app_state.decode_budget
    )
    # Alerts on this stream come back to it; its captions and frames feed the rules.
    link = PageAlerts(app_state.alerts, session.post)
    logger.debug("Stream connection from %s", websocket.client)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_write, websocket, session, tasks.cancel_scope)
            tasks.start_soon(_activate, host, session, limits, link)
            tasks.start_soon(slot.give_back_when_idle)
            await _read(websocket, session, limits, guard, link)
            tasks.cancel_scope.cancel()
    finally:
        link.close()
        session.close()
        slot.release()
        logger.debug("Stream connection from %s closed", websocket.client)


async def _activate(host: ModelHost, session: Session, limits: FrameLimits, link: PageAlerts) -> None:
    await host.wait_settled()
    if host.status is ModelStatus.READY and host.scheduler is not None and host.info is not None:
        try:
            stream = host.scheduler.open_stream(sink=link.sink, options=session.options)
        except RuntimeError:  # the scheduler closed between the check and now: shutting down
            session.post(ErrorEvent(code=ErrorCode.SERVER_CLOSING.value, message="The server is shutting down."))
            return
        ready = ReadyEvent(
            stream_id=stream.id,
            model=convert.model_info_out(host.info),
            version=__version__,
            limits=convert.limits_out(limits),
        )
        session.go_live(stream, ready, host.info)
        link.attach(stream, host.scheduler)
    else:
        message = host.error or "The model failed to load."
        session.post(ErrorEvent(code=ErrorCode.MODEL_ERROR.value, message=message))
        session.post(CloseSocket.MODEL_FAILED)


async def _write(websocket: WebSocket, session: Session, scope: anyio.CancelScope) -> None:
    try:
        while True:
            item = await session.outbox.get()
            if isinstance(item, CloseSocket):
                await websocket.close(code=item.value, reason=item.reason)
                break
            await websocket.send_text(_encode(item, session).model_dump_json())
    except Exception as exc:  # the client went away mid-send; the reader sees the disconnect too
        logger.debug("Stream send failed: %s", exc)
    scope.cancel()


def _encode(item: Outgoing, session: Session) -> BaseModel:
    if isinstance(item, TokenDelta):
        return TokenEvent(seq=item.seq, text=item.text)
    if isinstance(item, FrameCaption):
        assert session.info is not None  # captions only come once the session is live
        return convert.caption_event(item, session.info)
    if isinstance(item, FrameUnchanged):
        return convert.unchanged_event(item)
    if isinstance(item, FrameError):
        return convert.error_event(item)
    assert not isinstance(item, CloseSocket)
    return item


async def _read(
    websocket: WebSocket, session: Session, limits: FrameLimits, guard: StreamLimits, link: PageAlerts | None = None
) -> None:
    rate = FrameRate(guard.max_fps)
    while True:
        while session.outbox.qsize() >= MAX_BACKLOG:
            await anyio.sleep(_BACKLOG_POLL_S)
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data, text = message.get("bytes"), message.get("text")
        if data is not None:
            # uvicorn closes on messages over ws_max_size (1009); this holds under other servers.
            if len(data) > guard.max_message_bytes:
                error = ErrorEvent(code=ErrorCode.MESSAGE_TOO_LARGE.value, message=guard.message_too_large(len(data)))
                session.post(error)
                continue
            # Over max_fps_per_stream, the frame waits rather than being dropped: a page that sends
            # its next frame when a caption arrives is slowed, never left waiting for an answer.
            delay = rate.delay()
            if delay > 0:
                await anyio.sleep(delay)
            if not await _on_frame(session, data, limits, link):
                await anyio.sleep_forever()  # refused: the writer closes the socket, which ends us
        elif text is not None:
            _on_text(session, text, guard)


async def _on_frame(session: Session, data: bytes, limits: FrameLimits, link: PageAlerts | None = None) -> bool:
    """Handle one frame; False when the stream was refused (the server is full) and must end."""
    received_at, received_wall = monotonic(), wall_ms()
    try:
        header, image_bytes = split_frame(data)
    except InvalidFrameError as exc:
        session.post(ErrorEvent(code=ErrorCode.BAD_FRAME.value, message=str(exc)))
        return True
    seq = session.next_seq(header)
    if session.state is not SessionState.LIVE or session.stream is None or session.info is None:
        message = "The model is still loading; wait for the 'ready' event before sending frames."
        session.post(ErrorEvent(seq=seq, code=ErrorCode.NOT_READY.value, message=message))
        return True
    slot = session.slot
    if slot is not None:
        if not slot.take():
            session.post(ErrorEvent(seq=seq, code=ErrorCode.TOO_MANY_STREAMS.value, message=slot.slots.busy_message()))
            session.post(CloseSocket.TRY_AGAIN_LATER)
            return False
        slot.awaiting = seq  # until it is answered, the stream is not idle however long the model takes
    try:
        decoded = await decode_image_off_loop(
            image_bytes,
            limits,
            max_short_side=session.info.input_size,
            with_signature=session.options.needs_signature,
            budget=session.decode_budget,
        )
    except FrameTooLargeError as exc:
        session.post(ErrorEvent(seq=seq, code=ErrorCode.FRAME_TOO_LARGE.value, message=str(exc)))
        return True
    except InvalidImageError as exc:
        session.post(ErrorEvent(seq=seq, code=ErrorCode.INVALID_IMAGE.value, message=str(exc)))
        return True
    if session.state is not SessionState.LIVE:
        return True
    sent_at = header.sent_at if header is not None else None
    upload_ms = receive_ms(sent_at, received_wall)
    if sent_at is not None and upload_ms is None and session.metrics is not None:
        session.metrics.client_clock_rejected.inc()  # a client clock far off (or lying): not a duration
    frame = Frame(
        seq=seq,
        image=decoded.image,
        task=session.task,
        received_at=received_at,
        image_decode_ms=decoded.decode_ms,
        receive_ms=upload_ms,
        captured_at=header.captured_at if header is not None else None,
        signature=decoded.signature,
    )
    try:
        session.stream.submit(frame)
    except UnsupportedTaskError as exc:
        session.post(ErrorEvent(seq=seq, code=ErrorCode.UNSUPPORTED_TASK.value, message=str(exc)))
        return True
    if link is not None:
        link.submitted(frame)  # the question rules on this stream look at the same image, in the same batch
    return True


def _on_text(session: Session, text: str, guard: StreamLimits) -> None:
    """Apply a `config` message; anything wrong is answered with `bad_message` and ignored."""
    error = _apply_config(session, text, guard)
    if error is not None:
        session.post(error)


def _apply_config(session: Session, text: str, guard: StreamLimits) -> ErrorEvent | None:
    if len(text) > MAX_TEXT_MESSAGE:
        return _bad(f"The text message is {len(text)} characters; a config message is at most {MAX_TEXT_MESSAGE}.")
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return _bad(f'The text message is not JSON ({exc}); expected e.g. {{"type": "config", "task": "caption"}}.')
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind != "config":
        return _bad(
            f"Unknown message type {kind!r}; the only text message is a config, e.g. "
            '{"type": "config", "task": "query", "question": "What is on the table?"}. Frames are binary.'
        )
    try:
        config = ConfigMessage.model_validate(payload)
        task = convert.task_from_config(config)
        options = convert.stream_options_from_config(config, session.default_options)
    except ValidationError as exc:
        return _bad(f"Invalid config: {describe(exc)}.")
    except ValueError as exc:
        return _bad(f"Invalid config: {exc}")
    too_long = task_text_problem(task, guard.max_question_chars)
    if too_long is not None:
        return _bad(f"Invalid config: {too_long}")
    if session.info is not None:
        try:
            session.info.check_task(task)
        except UnsupportedTaskError as exc:
            return ErrorEvent(code=ErrorCode.UNSUPPORTED_TASK.value, message=str(exc))
    session.configure(task, options)
    return None


def _bad(message: str) -> ErrorEvent:
    return ErrorEvent(code=ErrorCode.BAD_MESSAGE.value, message=message)
