"""Request bodies as they arrive: each within a deadline, all of them within a byte budget.

Starlette spools a multipart file over 1 MiB to a temporary file while the body arrives, and
uvicorn has no read timeout. So a client that sends an upload one byte short of complete, forty
times over, used to leave 320 MB of frame data in deleted temporary files for as long as it
liked. `UploadGuardMiddleware` bounds both:

- **A deadline.** A body must arrive whole within `upload_timeout_s` of its first byte being
  awaited; otherwise the request is answered `408 upload_timeout` and the connection closed.
- **A budget.** The bytes of bodies being received at once, all clients together, stay within
  `max_upload_bytes_in_flight` (`UploadBudget`). A declared `Content-Length` is reserved before
  any of it is read; a chunked body reserves as it arrives. Past the budget: `503 uploads_busy`
  with `Retry-After`, before the body is read.
- **The stop.** When the server begins to stop (`ClosingNotice`), a body still arriving is
  answered `503 server_closing` at once rather than cancelled, with a traceback, 5 s later.

Pure ASGI, like `BodySizeLimitMiddleware` (which runs first and refuses a body over the size
limit), so WebSockets and streamed responses pass untouched.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camcap.engine.timing import monotonic
from camcap.server.closing import ClosingNotice, ServerClosingError
from camcap.server.limits import BUSY_RETRY_AFTER_S
from camcap.server.messages import ErrorCode


class UploadBudget:
    """Bytes of request bodies being received at once. Used from the event loop only."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"max_upload_bytes_in_flight must be positive, got {capacity}.")
        self.capacity = capacity
        self.in_use = 0

    def reserve(self, size: int) -> bool:
        """Take `size` bytes of the budget; False (nothing taken) when they do not fit."""
        if self.in_use + size > self.capacity:
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use = max(0, self.in_use - size)


class _Refusal(Exception):
    def __init__(self, status: int, code: ErrorCode, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after


class UploadGuardMiddleware:
    """Answer 408 to a body that takes longer than `timeout_s`, 503 to one over the shared `budget`,
    and 503 to one still arriving when the server begins to stop."""

    def __init__(self, app: ASGIApp, budget: UploadBudget, timeout_s: float, closing: ClosingNotice) -> None:
        self.app = app
        self.budget = budget
        self.timeout_s = timeout_s
        self.closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not chunked and (not declared.isdigit() or int(declared) == 0):
            await self.app(scope, receive, send)  # no body: nothing to wait for or to spool
            return

        reserved = 0
        if not chunked:
            if not self.budget.reserve(int(declared)):
                await _answer(send, self._busy())
                return
            reserved = int(declared)
        deadline = monotonic() + self.timeout_s
        body_done = False
        refusal: _Refusal | None = None
        started = False

        async def guarded_receive() -> Message:
            nonlocal body_done, refusal, reserved
            if body_done:
                return await receive()  # after the body: only a disconnect can come, whenever
            try:
                message = await self.closing.unless_closing(receive(), timeout=max(0.0, deadline - monotonic()))
            except ServerClosingError:
                refusal = _Refusal(503, ErrorCode.SERVER_CLOSING, "The server is shutting down; try again later.")
                raise refusal from None
            except TimeoutError:
                refusal = self._timed_out()
                raise refusal from None
            if message["type"] == "http.request":
                if chunked:
                    size = len(message.get("body", b""))
                    if not self.budget.reserve(size):
                        refusal = self._busy()
                        raise refusal
                    reserved += size
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None and not started:
                return  # the app's own answer to the exception: the refusal below replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _Refusal:
            if started:
                raise
        finally:
            self.budget.release(reserved)
        if refusal is not None and not started:
            await _answer(send, refusal)

    def _busy(self) -> _Refusal:
        detail = (
            f"The server is already receiving {self.budget.in_use} bytes of uploads, its limit "
            f"(max_upload_bytes_in_flight = {self.budget.capacity}); try again in a few seconds."
        )
        return _Refusal(503, ErrorCode.UPLOADS_BUSY, detail, BUSY_RETRY_AFTER_S)

    def _timed_out(self) -> _Refusal:
        detail = (
            f"The request body did not arrive within {self.timeout_s:g} s (upload_timeout_s). Send the whole "
            "image at once; on a slow link, send a smaller one (resize it to the model's input_size)."
        )
        return _Refusal(408, ErrorCode.UPLOAD_TIMEOUT, detail)


async def _answer(send: Send, refusal: _Refusal) -> None:
    content = json.dumps({"code": refusal.code.value, "detail": refusal.detail}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode("ascii")),
        # The rest of the body is left unread: the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode("ascii")))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
