"""The HTTP API: `GET /healthz`, `GET /v1/info` and `POST /v1/caption`.

`POST /v1/caption` is a one-shot stream on the same scheduler as the WebSockets, so HTTP callers
and live pages share the model fairly, and a request's frame takes its turn like anyone's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from camcap import __version__
from camcap.engine.events import Frame, FrameCaption, FrameError
from camcap.engine.frames import DecodeBudget, FrameLimits, FrameTooLargeError, decode_image_off_loop
from camcap.engine.scheduler import Scheduler
from camcap.engine.timing import monotonic
from camcap.errors import InvalidImageError, UnsupportedTaskError
from camcap.models.base import ModelInfo, Task
from camcap.server import convert
from camcap.server.closing import ClosingNotice, ServerClosingError
from camcap.server.host import ModelHost, ModelStatus
from camcap.server.limits import BUSY_RETRY_AFTER_S, StreamSlots, task_text_problem
from camcap.server.messages import (
    CaptionResponse,
    ConfigMessage,
    ErrorCode,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    describe_validation_error,
)

router = APIRouter()


class ApiError(Exception):
    """An error answer: raised by route code, rendered as an `ErrorResponse` by the app."""

    def __init__(self, status: int, code: ErrorCode, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers

    def response(self) -> JSONResponse:
        body = ErrorResponse(code=self.code.value, detail=self.detail)
        return JSONResponse(body.model_dump(), status_code=self.status, headers=self.headers)


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FormValidationError(BaseModel):
    """FastAPI's own 422 body: a form part missing, or not a file where a file is expected."""

    detail: list[FieldProblem]


_ERRORS = {
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    # Fields that parse but do not make a task (camcap's `bad_message`), or a part missing or of
    # the wrong kind (FastAPI's own validation error): the document promises either shape.
    422: {"model": ErrorResponse | FormValidationError},
    503: {"model": ErrorResponse},
}
# What a frame's failure on the scheduler means for an HTTP caller.
_FRAME_ERROR_STATUS = {ErrorCode.UNSUPPORTED_TASK: 400, ErrorCode.SERVER_CLOSING: 503}


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up (liveness). Whether the model is loaded: `GET /v1/info`."""
    return HealthResponse()


@router.get("/v1/info", response_model=InfoResponse)
async def info(request: Request) -> InfoResponse:
    """The model's status ("loading" | "ready" | "error"), and its info once it is ready."""
    host = _host(request)
    return InfoResponse(
        status=host.status.value,
        version=__version__,
        spec=host.settings.model,
        model=None if host.info is None else convert.model_info_out(host.info),
        error=host.error,
        limits=convert.limits_out(request.app.state.frame_limits),
    )


@router.post("/v1/caption", response_model=CaptionResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def caption(
    request: Request,
    image: Annotated[UploadFile, File(description="A JPEG, PNG or WebP image.")],
    task: Annotated[str, Form(description="caption | query | detect | point")] = "caption",
    length: Annotated[str, Form(description="short | normal | long (caption only)")] = "normal",
    question: Annotated[str | None, Form(description="The question (query only).")] = None,
    target: Annotated[str | None, Form(description="The object to find (detect / point only).")] = None,
) -> CaptionResponse:
    """Caption one image, waiting for the whole text (use the WebSocket to stream tokens)."""
    received_at = monotonic()
    host = _host(request)
    limits: FrameLimits = request.app.state.frame_limits
    # FastAPI keeps the last of a repeated part; a request that says two things gets neither.
    form = await request.form()  # already parsed for the parameters above: no second read
    repeated = sorted({key for key in form if len(form.getlist(key)) > 1})
    if repeated:
        detail = f"The form has {', '.join(repeated)} more than once; send each field once (one image per request)."
        raise ApiError(422, ErrorCode.BAD_MESSAGE, detail)
    # Form fields arrive as text, so one set of rules (the config message's) checks both transports.
    try:
        config = ConfigMessage(task=task, length=length, question=question or None, target=target or None)  # type: ignore[arg-type,call-arg]
        wanted = convert.task_from_config(config)
    except ValidationError as exc:
        raise ApiError(422, ErrorCode.BAD_MESSAGE, f"Invalid form fields: {describe_validation_error(exc)}.") from None
    except ValueError as exc:
        raise ApiError(422, ErrorCode.BAD_MESSAGE, f"Invalid form fields: {exc}") from None
    too_long = task_text_problem(wanted, request.app.state.stream_limits.max_question_chars)
    if too_long is not None:
        raise ApiError(422, ErrorCode.BAD_MESSAGE, too_long)

    if host.status is ModelStatus.LOADING:
        detail = "The model is still loading; retry when GET /v1/info says ready."
        raise ApiError(503, ErrorCode.NOT_READY, detail, {"Retry-After": "2"})
    if host.status is ModelStatus.ERROR or host.scheduler is None or host.info is None:
        raise ApiError(503, ErrorCode.MODEL_ERROR, host.error or "The model is not available.")
    model = host.info
    try:
        model.check_task(wanted)
    except UnsupportedTaskError as exc:
        raise ApiError(400, ErrorCode.UNSUPPORTED_TASK, str(exc)) from None

    # A one-shot caption is a client like a live stream: it holds a decoded frame and a turn.
    slots: StreamSlots = request.app.state.stream_slots
    if not slots.acquire():
        raise ApiError(503, ErrorCode.TOO_MANY_STREAMS, slots.busy_message(), {"Retry-After": str(BUSY_RETRY_AFTER_S)})
    closing: ClosingNotice = request.app.state.closing
    try:
        budget: DecodeBudget = request.app.state.decode_budget
        return await _caption_one(host.scheduler, image, wanted, model, limits, received_at, closing, budget)
    finally:
        slots.release()


async def _caption_one(
    scheduler: Scheduler,
    image: UploadFile,
    wanted: Task,
    model: ModelInfo,
    limits: FrameLimits,
    received_at: float,
    closing: ClosingNotice,
    budget: DecodeBudget,
) -> CaptionResponse:
    # Read one byte past the limit: enough to know the upload is too large without holding it all.
    data = await image.read(limits.max_bytes + 1)
    try:
        decoded = await decode_image_off_loop(data, limits, max_short_side=model.input_size, budget=budget)
    except FrameTooLargeError as exc:
        raise ApiError(413, ErrorCode.FRAME_TOO_LARGE, str(exc)) from None
    except InvalidImageError as exc:
        raise ApiError(400, ErrorCode.INVALID_IMAGE, str(exc)) from None

    frame = Frame(seq=0, image=decoded.image, task=wanted, received_at=received_at, image_decode_ms=decoded.decode_ms)
    try:
        stream = scheduler.open_stream()
    except RuntimeError:  # closed while this upload was read: the server is shutting down
        raise ApiError(503, ErrorCode.SERVER_CLOSING, "The server is shutting down; try again later.") from None
    try:
        stream.submit(frame)
        while True:
            try:
                # A caption not made when the server begins to stop will not be: say so now.
                event = await closing.unless_closing(stream.next_event())
            except ServerClosingError:
                raise ApiError(503, ErrorCode.SERVER_CLOSING, "The server is shutting down; try again later.") from None
            if isinstance(event, FrameCaption):
                return convert.caption_response(event, model)
            if isinstance(event, FrameError):
                raise ApiError(_FRAME_ERROR_STATUS.get(event.code, 500), event.code, event.message)
    finally:
        # Also on a client that hangs up: the caption in progress is cancelled, not finished.
        stream.close()


async def unreadable_body(request: Request, exc: Exception) -> Response:
    """Starlette's 400 for a body that is not valid multipart (or not a form at all), in camcap's
    error shape, which is what the API document promises for 400; other statuses as FastAPI has them."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 400:
        return await http_exception_handler(request, exc)
    detail = (
        f"The request body cannot be read as a form ({exc.detail}). Send multipart/form-data with the image "
        "as a file part named `image`, e.g. curl -F image=@photo.jpg http://127.0.0.1:8000/v1/caption"
    )
    return ApiError(400, ErrorCode.BAD_MESSAGE, detail).response()


def _host(request: Request) -> ModelHost:
    host: ModelHost = request.app.state.host
    return host
