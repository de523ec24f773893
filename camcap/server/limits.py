"""What one client may cost the server: request bodies, concurrent clients, frame rate, text.

Each limit comes from `Settings` and answers in words that say which setting to change:

- A request body over `upload_max_size()` gets 413 before more than that is read
  (`BodySizeLimitMiddleware`, pure ASGI, so it also covers chunked uploads without a length).
- Clients served at once, live streams and one-shot `POST /v1/caption` together, are capped at
  `max_streams` (`StreamSlots`): one more gets an `error` event and close code 1013 ("try again
  later"), or HTTP 503 with `Retry-After`. A live stream takes its slot with its first frame, not
  when it connects, and gives it back after `stream_idle_s` without a frame (`StreamSlot`): a
  socket that sends nothing, or a paused page, holds a connection and never a model slot.
- A stream's frames are read at most `max_fps_per_stream` per second (`FrameRate`). Faster frames
  are not dropped or answered with errors: the stream's reader waits, so a paced page is simply
  slowed and a flooding client is held back by TCP, costing only its own freshness.
- Questions and object names are at most `max_question_chars` (`task_text_problem`).

Frame bytes and pixels are checked in engine/frames.py; WebSocket message size by uvicorn
(`ws_max_size`) and again by the handler.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camcap.config import Settings
from camcap.models.base import Task
from camcap.server.messages import ErrorCode

#: "Try again later": the close code for a stream refused because the server is full.
WS_TRY_AGAIN_LATER = 1013
#: Seconds a client refused for being one too many is told to wait (HTTP `Retry-After`).
BUSY_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class StreamLimits:
    """The per-connection limits a WebSocket handler applies, read once from the settings."""

    max_message_bytes: int
    max_fps: float
    max_question_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamLimits:
        return cls(
            max_message_bytes=settings.ws_max_size(),
            max_fps=settings.max_fps_per_stream,
            max_question_chars=settings.max_question_chars,
        )

    def message_too_large(self, size: int) -> str:
        return (
            f"The message is {size} bytes, over the limit of {self.max_message_bytes} (max_ws_message_bytes); "
            "send smaller frames (resize them to the model's input_size, or lower the JPEG quality)."
        )


# --- concurrent clients --------------------------------------------------------------------------


class StreamSlots:
    """How many clients the model serves at once; shared by the app's connections.

    Used from the event loop only (acquire and release are plain, non-awaiting calls there), so
    no lock is needed.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_streams must be at least 1, got {capacity}.")
        self.capacity = capacity
        self.in_use = 0

    def acquire(self) -> bool:
        """Take a slot; False when all `capacity` are taken (refuse the client)."""
        if self.in_use >= self.capacity:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        if self.in_use <= 0:
            raise RuntimeError("StreamSlots.release() without a matching acquire(); this is a bug in camcap.")
        self.in_use -= 1

    def busy_message(self) -> str:
        return (
            f"The server is already serving {self.capacity} clients (max_streams); try again in a few seconds, "
            "close another camcap page, or restart camcap serve with a higher CAMCAP_MAX_STREAMS."
        )


class StreamSlot:
    """One live stream's claim on a `StreamSlots` place: taken with its first frame, given back
    once the stream has sent nothing for `idle_s` and has no frame waiting for an answer.

    A page that is paused (camera off, tab hidden) keeps its socket but not its slot; when it
    sends again it takes a slot again, or is told the server is full, like a new client.
    Used from the event loop only.
    """

    def __init__(self, slots: StreamSlots, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.slots = slots
        self.idle_s = idle_s
        self._clock = clock
        self.held = asyncio.Event()  # set while the slot is taken
        self.last_active = clock()
        self.awaiting: int | None = None  # the seq of the frame waiting for its answer, if any

    def take(self) -> bool:
        """A frame arrived: keep the slot, or take one; False when the server is full."""
        self.last_active = self._clock()
        if self.held.is_set():
            return True
        if not self.slots.acquire():
            return False
        self.held.set()
        return True

    def answered(self, seq: int | None) -> None:
        """The stream was answered (a caption, `unchanged` or an error) for frame `seq`."""
        if seq is not None and seq == self.awaiting:
            self.awaiting = None
            self.last_active = self._clock()

    def idle_for(self) -> float | None:
        """Seconds the stream has been idle, or None while a frame is in flight."""
        return None if self.awaiting is not None else self._clock() - self.last_active

    def release(self) -> None:
        if self.held.is_set():
            self.held.clear()
            self.slots.release()

    async def give_back_when_idle(self) -> None:
        """Run for the life of the connection: release the slot whenever the stream goes idle."""
        while True:
            await self.held.wait()
            idle = self.idle_for()
            if idle is not None and idle >= self.idle_s:
                self.release()
                continue
            # In flight: look again after a whole period; the answer restarts the idle clock.
            await asyncio.sleep(self.idle_s if idle is None else self.idle_s - idle)


# --- frame rate ----------------------------------------------------------------------------------


class FrameRate:
    """A token bucket: on average `rate` frames per second, in bursts of at most `burst`.

    `delay()` takes one frame's allowance and says how long to wait before handling that frame.
    The allowance may go into debt, so a caller that waits each delay out before asking again is
    held to exactly `rate` once its burst is spent.
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"max_fps_per_stream must be positive, got {rate}.")
        self.rate = rate
        # A second's worth by default: a page that catches up after a hiccup is not slowed.
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._allowance = self.burst
        self._last = clock()

    def delay(self) -> float:
        """Seconds to wait before handling the frame that just arrived (0.0: at once)."""
        now = self._clock()
        self._allowance = min(self.burst, self._allowance + (now - self._last) * self.rate) - 1.0
        self._last = now
        # A hair of slack: a client sending exactly at the rate must not wait for float rounding.
        return 0.0 if self._allowance > -1e-9 else -self._allowance / self.rate


# --- text ----------------------------------------------------------------------------------------


def task_text_problem(task: Task, max_chars: int) -> str | None:
    """Why the task's question or object name is too long, or None if it is fine."""
    for what, text in (("question", task.question), ("object name", task.target)):
        if text is not None and len(text) > max_chars:
            return (
                f"The {what} is {len(text)} characters; at most {max_chars} are allowed (max_question_chars). "
                "Ask something shorter."
            )
    return None


# --- request bodies ------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    """Raised from `receive` once a body passes the limit; the middleware answers 413."""


class BodySizeLimitMiddleware:
    """Answer 413 to HTTP requests whose body is over `max_bytes`, having read at most that much.

    A declared `Content-Length` over the limit is refused before any of the body is read. Bodies
    without one (chunked) are counted as the app reads them; past the limit, `receive` raises, and
    whatever the app makes of that (FastAPI turns it into a 400) is replaced by the 413, unless the
    app already started its answer. Pure ASGI, so WebSockets and streamed responses pass untouched.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return

        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's own answer to the exception: the 413 below replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            if started:
                raise  # an answer is on its way already; nothing sensible is left to send
        if over and not started:
            await self._refuse(send, None)

    async def _refuse(self, send: Send, size: int | None) -> None:
        said = f"is {size} bytes" if size is not None else f"is over {self.max_bytes} bytes"
        detail = (
            f"The request body {said}; at most {self.max_bytes} are accepted (max_upload_bytes). Send a smaller "
            "image: resize it to the model's input_size (GET /v1/info) or lower the JPEG quality."
        )
        content = json.dumps({"code": ErrorCode.UPLOAD_TOO_LARGE.value, "detail": detail}).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode("ascii")),
            # The rest of the body is left unread: the connection cannot carry another request.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": content})
