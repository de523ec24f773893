"""`POST /v1/chat/completions` and `GET /v1/models`: camcap's model for the tools people already have
(the `openai` package, LangChain, Open WebUI, curl).

A chat completion is a one-shot stream on the same scheduler as every live page, like
`POST /v1/caption`: it takes a client slot (a full server answers 429 with `Retry-After`), its
frame takes its turn fairly and may share a batch with other streams, and the access rules are the
same (beyond loopback the server's token is the API key: `Authorization: Bearer <token>`).
How a request becomes a frame and a task: server/openai_schema.py. Images come as `data:` URLs;
`http(s)` URLs are refused unless the server runs with `--allow-image-urls`, because fetching a URL
a client names lets that client reach other servers through this one (server-side request forgery).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from camcap.engine.events import Frame, FrameCaption, FrameError, TokenDelta
from camcap.engine.frames import FrameLimits, FrameTooLargeError, decode_image_off_loop
from camcap.engine.scheduler import Stream
from camcap.engine.timing import monotonic
from camcap.errors import InvalidImageError, UnsupportedTaskError
from camcap.models.base import TaskKind
from camcap.server.host import ModelHost, ModelStatus
from camcap.server.limits import BUSY_RETRY_AFTER_S, StreamSlots, task_text_problem
from camcap.server.messages import ErrorCode, describe_validation_error
from camcap.server.openai_schema import (
    BadChatRequest,
    ChatCompletion,
    ChatCompletionRequest,
    FinishReason,
    ModelList,
    OpenAIErrorResponse,
    chunk,
    completion,
    completion_id,
    error_body,
    model_list,
    read_ask,
    request_body_schema,
    usage_chunk,
)

logger = logging.getLogger(__name__)

router = APIRouter()
IMAGE_FETCH_TIMEOUT_S = 10.0
_FRAME_ERROR_STATUS = {ErrorCode.UNSUPPORTED_TASK: 400, ErrorCode.SERVER_CLOSING: 503}


def install(app: FastAPI) -> None:
    """Add the OpenAI-compatible routes to a camcap app."""
    app.state.openai_created = int(time.time())  # `created` of the model in GET /v1/models
    app.include_router(router)


class OpenAIError(Exception):
    """An error answer in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, code: str, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        body = error_body(self.status, self.message, self.code, self.param)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


_REQUEST_SCHEMA = request_body_schema()
_ERROR = {"model": OpenAIErrorResponse}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ChatCompletion,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "The answer; with `stream`: server-sent `chat.completion.chunk` events, then `data: [DONE]`.",
    },
    **{status: _ERROR for status in (400, 401, 403, 404, 413, 429, 500, 503)},
}


@router.get("/v1/models", response_model=ModelList, responses={401: _ERROR, 403: _ERROR})  # type: ignore[dict-item]
async def list_models(request: Request) -> ModelList:
    """The model this server runs (OpenAI's model list), listed while it loads too."""
    return model_list(_host(request).settings.model, request.app.state.openai_created)


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses=_RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST_SCHEMA}}}},
)
async def chat_completions(request: Request) -> Response:
    """Answer about one image: a caption, or the answer to the user's question; streamed with `stream`."""
    try:
        return await _chat_completions(request)
    except OpenAIError as exc:
        return exc.response()


async def _chat_completions(request: Request) -> Response:
    received_at = monotonic()
    host = _host(request)
    chat = await _read_request(request)
    try:
        ask = read_ask(chat)
    except BadChatRequest as exc:
        raise OpenAIError(400, str(exc), exc.code, exc.param) from None
    too_long = task_text_problem(ask.task, request.app.state.stream_limits.max_question_chars)
    if too_long is not None:
        raise OpenAIError(400, too_long, "context_length_exceeded", "messages")

    model_id = host.settings.model
    if chat.model != model_id:
        raise OpenAIError(
            404, f"The model {chat.model!r} does not exist here; this server runs {model_id!r} (GET /v1/models).",
            "model_not_found", "model",
        )  # fmt: skip
    if host.status is ModelStatus.LOADING:
        detail = "The model is still loading; retry when GET /v1/info says ready."
        raise OpenAIError(503, detail, ErrorCode.NOT_READY.value, headers={"Retry-After": "2"})
    if host.status is ModelStatus.ERROR or host.scheduler is None or host.info is None:
        raise OpenAIError(503, host.error or "The model is not available.", ErrorCode.MODEL_ERROR.value)
    info = host.info
    try:
        info.check_task(ask.task)
    except UnsupportedTaskError as exc:
        hint = " Send the image with no text to get a caption." if ask.task.kind is TaskKind.QUERY else ""
        raise OpenAIError(400, f"{exc}{hint}", ErrorCode.UNSUPPORTED_TASK.value, "messages") from None

    # A chat completion is a client like a live stream: it holds a decoded frame and a turn.
    slots: StreamSlots = request.app.state.stream_slots
    if not slots.acquire():
        raise OpenAIError(
            429, slots.busy_message(), ErrorCode.TOO_MANY_STREAMS.value,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )  # fmt: skip
    answer: _Answer | None = None
    try:
        limits: FrameLimits = request.app.state.frame_limits
        data = await _image_bytes(ask.image_url, limits, allow_urls=host.settings.allow_image_urls)
        try:
            decoded = await decode_image_off_loop(data, limits, max_short_side=info.input_size)
        except FrameTooLargeError as exc:
            raise OpenAIError(413, str(exc), ErrorCode.FRAME_TOO_LARGE.value, "messages") from None
        except InvalidImageError as exc:
            raise OpenAIError(400, str(exc), ErrorCode.INVALID_IMAGE.value, "messages") from None
        frame = Frame(0, decoded.image, ask.task, received_at=received_at, image_decode_ms=decoded.decode_ms)
        try:
            stream = host.scheduler.open_stream()
        except RuntimeError:  # closed while the image was read: the server is shutting down
            raise OpenAIError(503, "The server is shutting down; try again later.", "server_closing") from None
        answer = _Answer(stream, slots, chat.token_limit(), host.settings.max_new_tokens)
        stream.submit(frame)
        if chat.stream:
            include_usage = chat.stream_options is not None and chat.stream_options.include_usage
            return await _streamed(answer, model_id, include_usage)
        return await _whole(answer, model_id)
    except BaseException:
        if answer is not None:
            answer.close()
        else:
            slots.release()
        raise


# --- reading the request ---------------------------------------------------------------------------


async def _read_request(request: Request) -> ChatCompletionRequest:
    # Megabytes of JSON (a base64 image) are parsed on a worker thread, not the event loop.
    return await anyio.to_thread.run_sync(_parse_request, await request.body())


def _parse_request(body: bytes) -> ChatCompletionRequest:
    try:
        data = json.loads(body)
    except ValueError:
        raise OpenAIError(400, "The body is not JSON; send a chat completion request.", "invalid_json") from None
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise OpenAIError(400, f"Invalid request: {describe_validation_error(exc)}.", "invalid_request") from None


async def _image_bytes(url: str, limits: FrameLimits, *, allow_urls: bool) -> bytes:
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise OpenAIError(
                400, "The image is a data: URL without base64 content; send data:image/jpeg;base64,<bytes>.",
                ErrorCode.INVALID_IMAGE.value, "messages",
            )  # fmt: skip
        if len(payload) * 3 // 4 > limits.max_bytes:
            raise OpenAIError(
                413, f"The image is over {limits.max_bytes} bytes (max_frame_bytes); send a smaller one.",
                ErrorCode.FRAME_TOO_LARGE.value, "messages",
            )  # fmt: skip
        try:
            return await anyio.to_thread.run_sync(functools.partial(base64.b64decode, payload, validate=True))
        except (binascii.Error, ValueError):
            raise OpenAIError(
                400, "The image's data: URL is not valid base64.", ErrorCode.INVALID_IMAGE.value, "messages"
            ) from None
    if url.startswith(("http://", "https://")):
        if not allow_urls:
            raise OpenAIError(
                400, "This server does not fetch image URLs (a server-side request forgery risk): send the image as "
                "a data:image/jpeg;base64,... URL, or restart camcap serve with --allow-image-urls.",
                "image_url_not_allowed", "messages",
            )  # fmt: skip
        return await _fetch(url, limits)
    raise OpenAIError(400, "An image URL must be a data: URL (or http(s) with --allow-image-urls).", "invalid_image")


async def _fetch(url: str, limits: FrameLimits) -> bytes:
    """Download an image a client named (only with --allow-image-urls), at most max_frame_bytes."""
    data = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=IMAGE_FETCH_TIMEOUT_S, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise OpenAIError(400, f"Fetching the image URL gave HTTP {response.status_code}.", "invalid_image")
            async for piece in response.aiter_bytes():
                data += piece
                if len(data) > limits.max_bytes:
                    raise OpenAIError(
                        413, f"The image at the URL is over {limits.max_bytes} bytes.", ErrorCode.FRAME_TOO_LARGE.value
                    )
    except httpx.HTTPError as exc:
        raise OpenAIError(400, f"The image URL cannot be fetched: {exc}", "invalid_image") from None
    return bytes(data)


# --- answering ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _End:
    finish: FinishReason
    tokens: int
    text: str | None  # the caption's final text, when the model finished it


class _Answer:
    """One request's stream on the scheduler, read as text pieces then one `_End`. `close()`
    cancels the generation if it still runs and frees the client slot; it is safe to call twice."""

    def __init__(self, stream: Stream, slots: StreamSlots, limit: int | None, max_new_tokens: int) -> None:
        self.stream, self.slots, self.limit, self.max_new_tokens = stream, slots, limit, max_new_tokens
        self.tokens = 0
        self._closed = False

    async def pieces(self) -> AsyncIterator[str | _End]:
        while True:
            event = await self.stream.next_event()
            if isinstance(event, TokenDelta):
                self.tokens += 1
                yield event.text
                if self.limit is not None and self.tokens >= self.limit:
                    self.close()  # max_tokens: stop the model here, as OpenAI's servers do
                    yield _End("length", self.tokens, None)
                    return
            elif isinstance(event, FrameCaption):
                tokens = event.caption.timings.tokens
                finish: FinishReason = "length" if tokens >= self.max_new_tokens else "stop"
                yield _End(finish, tokens, event.caption.text)
                return
            elif isinstance(event, FrameError):
                status = _FRAME_ERROR_STATUS.get(event.code, 500)
                raise OpenAIError(status, event.message, event.code.value)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.stream.close()
            self.slots.release()


async def _whole(answer: _Answer, model_id: str) -> Response:
    try:
        parts: list[str] = []
        async for piece in answer.pieces():
            if isinstance(piece, str):
                parts.append(piece)
            else:
                text = piece.text if piece.text is not None else "".join(parts)
                whole = completion(completion_id(), model_id, text, piece.finish, piece.tokens)
                return JSONResponse(whole.model_dump())
        raise AssertionError("the answer ended without its end")  # pieces() always ends with an _End
    finally:
        answer.close()


async def _streamed(answer: _Answer, model_id: str, include_usage: bool) -> Response:
    pieces = answer.pieces()
    # The first piece before the headers: a frame that fails before its first token gets a real
    # HTTP error status, not a 200 with an error event.
    first = await pieces.__anext__()
    ident, created = completion_id(), int(time.time())

    async def events() -> AsyncIterator[str]:
        try:
            yield _sse(chunk(ident, model_id, {"role": "assistant", "content": ""}, created=created))
            piece: str | _End = first
            while True:
                if isinstance(piece, _End):
                    yield _sse(chunk(ident, model_id, {}, piece.finish, created=created))
                    if include_usage:
                        yield _sse(usage_chunk(ident, model_id, piece.tokens, created))
                    break
                yield _sse(chunk(ident, model_id, {"content": piece}, created=created))
                piece = await pieces.__anext__()
        except OpenAIError as exc:
            # After the 200, a failure travels as an event of its own, as OpenAI-compatible servers send it.
            yield _sse(error_body(exc.status, exc.message, exc.code))
        finally:
            answer.close()
        yield "data: [DONE]\n\n"

    return _CompletionStream(events(), on_close=answer.close)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class _CompletionStream(StreamingResponse):
    """A streamed answer that frees its stream whatever happens, even if the client leaves before
    the body's first byte (then the body's own `finally` never runs)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _host(request: Request) -> ModelHost:
    host: ModelHost = request.app.state.host
    return host
