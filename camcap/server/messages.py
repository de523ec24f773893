"""Every message of the live channel (`WS /v1/stream`) and the HTTP API, as one schema.

Client -> server
    binary  a frame: either bare JPEG/PNG/WebP bytes, or FRAME_MAGIC + uint32 (big-endian) header
            length (at most MAX_FRAME_HEADER_BYTES) + UTF-8 JSON `FrameHeader` + image bytes. The
            page always sends the header so the server can echo the capture time and sequence
            number back; a bare frame gets the previous frame's seq + 1 (0 for the first).
    text    JSON `ConfigMessage` (what to ask of every later frame; until one arrives: caption,
            normal length). A config the server rejects leaves the previous one in force. A config
            replaces the whole previous one (a field left out takes its default), and the frame after
            it is always captioned, even if the scene has not changed.

Server -> client (JSON text, tagged by `type`)
    ready    once, when the model is loaded (at once if it already is): the model's info and the
             stream's limits. Frames sent before it are answered with an `error` (`not_ready`).
    token    a text delta of the caption being written for frame `seq`
    caption  the final text for frame `seq`, with every stage's timing
    unchanged  frame `seq` was not captioned: it barely differs from frame `reference_seq`, whose
             caption (perhaps still being written) still describes the scene. It answers the frame
             as a caption would: a page pacing by the model sends its next frame.
    error    something went wrong with one frame or message; the stream stays usable. If the model
             failed to load, the server sends one `error` (`model_error`) and closes with 1011.
             Code `superseded` (only with `cut_stale`): the frame's caption was cut short because a
             newer frame of the stream showed a changed scene; the newer frame is captioned instead.

A field never changes meaning; new fields may be added. Error codes are listed in `ErrorCode`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FRAME_MAGIC = b"CCF1"  # "camcap frame, version 1"
MAX_FRAME_HEADER_BYTES = 4096  # the JSON header is a few dozen bytes; anything near this is not one
#: The largest `seq`: Number.MAX_SAFE_INTEGER, the largest integer a JavaScript number holds exactly,
#: so the page can always compare the seq it sent with the one echoed back.
MAX_SEQ = 2**53 - 1


class ErrorCode(str, enum.Enum):
    """The `code` of an `error` event or an HTTP error body. Codes are stable; new ones may appear."""

    BAD_FRAME = "bad_frame"  # the binary envelope (FRAME_MAGIC header) is malformed
    INVALID_IMAGE = "invalid_image"  # not JPEG/PNG/WebP, empty, truncated or corrupt
    FRAME_TOO_LARGE = "frame_too_large"  # over max_frame_bytes or max_frame_pixels
    BAD_MESSAGE = "bad_message"  # a text message that is not valid JSON or not a valid `config`
    UNSUPPORTED_TASK = "unsupported_task"  # the model cannot do this task; the message lists what it can
    NOT_READY = "not_ready"  # a frame arrived before `ready` (the model is still loading)
    MODEL_ERROR = "model_error"  # the model failed to load, or failed on this frame
    SERVER_CLOSING = "server_closing"  # the server is shutting down
    SUPERSEDED = "superseded"  # cut_stale stopped this frame's caption: a newer, changed frame is captioned
    UPLOAD_TOO_LARGE = "upload_too_large"  # an HTTP request body over max_upload_bytes (413)
    MESSAGE_TOO_LARGE = "message_too_large"  # a WebSocket message over max_ws_message_bytes
    TOO_MANY_STREAMS = "too_many_streams"  # max_streams clients are being served already
    UPLOAD_TIMEOUT = "upload_timeout"  # an HTTP request body did not arrive within upload_timeout_s (408)
    UPLOADS_BUSY = "uploads_busy"  # max_upload_bytes_in_flight are being received already (503)
    UNKNOWN_SOURCE = "unknown_source"  # no live source has that name (GET /v1/sources lists them)
    UNKNOWN_RULE = "unknown_rule"  # no alert rule has that name (GET /v1/rules lists them)
    INVALID_RULE = "invalid_rule"  # a rule that cannot be used as written; the detail says why


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- client -> server ----------------------------------------------------------------------------


class FrameHeader(_Message):
    seq: int = Field(ge=0, le=MAX_SEQ, description="The client's frame counter, echoed back in events.")
    # Python's json reads NaN and Infinity; neither is a time.
    captured_at: float | None = Field(
        None, allow_inf_nan=False, description="Capture time, ms since the Unix epoch (client clock)."
    )
    sent_at: float | None = Field(
        None, allow_inf_nan=False, description="Send time, ms since the Unix epoch (client clock)."
    )


class ConfigMessage(_Message):
    type: Literal["config"] = "config"
    task: Literal["caption", "query", "detect", "point"] = "caption"
    length: Literal["short", "normal", "long"] = "normal"
    question: str | None = Field(None, max_length=500)
    target: str | None = Field(None, max_length=100)
    change_threshold: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Skip a frame if less than this percentage of the picture changed since the last "
        "captioned frame (0: caption every frame). None: the server's setting.",
    )
    cut_stale: bool | None = Field(
        None, description="Cut a caption short when a much newer, changed frame waits. None: the server's setting."
    )


# --- server -> client ----------------------------------------------------------------------------


class ModelInfoOut(_Message):
    name: str
    backend: str
    device: str
    dtype: str
    tasks: list[str]
    input_size: int = Field(description="Send frames whose short side is at most this many pixels.")
    max_batch: int
    random_weights: bool = Field(description="True: captions are meaningless words from random weights.")
    revision: str | None = None
    frames_sent_to: str | None = Field(
        None, description="The server (scheme://host:port) every frame is sent to (openai: models); None: none."
    )
    frames_leave_network: bool = Field(
        False, description="True: that server is beyond this machine and its private network."
    )
    demo: bool = Field(False, description="True: a small demo model that knows only the scenes it was trained on.")


class LimitsOut(_Message):
    """What the server accepts per frame; a frame over a limit is answered with `frame_too_large`."""

    max_frame_bytes: int = Field(description="Largest image (without the header) in bytes.")
    max_frame_pixels: int = Field(description="Largest width x height, checked before decoding.")


class ReadyEvent(_Message):
    type: Literal["ready"] = "ready"
    stream_id: str
    model: ModelInfoOut
    version: str
    limits: LimitsOut


class TokenEvent(_Message):
    type: Literal["token"] = "token"
    seq: int
    text: str


class StageTimings(_Message):
    """Milliseconds per stage of one frame's trip. Server-side stages use the server's clock."""

    receive_ms: float | None = Field(None, description="sent_at -> received (needs both clocks in sync).")
    queue_ms: float = Field(description="Waiting in the stream's slot for the model worker.")
    image_decode_ms: float = Field(description="JPEG/PNG/WebP bytes -> pixels.")
    preprocess_ms: float
    first_token_ms: float
    decode_ms: float = Field(description="Token generation after the first token.")
    encode_ms: float | None = None
    inference_ms: float = Field(description="The model's whole share: preprocess + generation.")
    total_ms: float = Field(description="Received -> caption final, on the server.")
    tokens: int


class BoxOut(_Message):
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class PointOut(_Message):
    x: float
    y: float


class CaptionEvent(_Message):
    type: Literal["caption"] = "caption"
    seq: int
    text: str
    task: str = Field(description="The task kind: caption, query, detect or point.")
    model: str
    random_weights: bool
    captured_at: float | None = Field(None, description="Echo of the frame's capture time (client clock).")
    skipped: int = Field(0, description="Frames replaced by newer ones since the previous caption.")
    unchanged: int = Field(0, description="Frames answered `unchanged` (not captioned) since the previous caption.")
    timings: StageTimings
    boxes: list[BoxOut] = []
    points: list[PointOut] = []


class UnchangedEvent(_Message):
    type: Literal["unchanged"] = "unchanged"
    seq: int
    reference_seq: int = Field(description="The frame whose caption still describes this one (maybe still coming).")
    difference: float = Field(
        description="Percentage of the picture (0..100) that changed since reference_seq: the share of 64x48 "
        "thumbnail cells whose grey level moved by more than 8 levels. Below the stream's change_threshold."
    )
    captured_at: float | None = Field(None, description="Echo of the frame's capture time (client clock).")


class ErrorEvent(_Message):
    type: Literal["error"] = "error"
    seq: int | None = None
    code: str = Field(description="Stable machine-readable code, e.g. invalid_image, bad_message.")
    message: str


ServerEvent = Annotated[
    ReadyEvent | TokenEvent | CaptionEvent | UnchangedEvent | ErrorEvent, Field(discriminator="type")
]


# --- HTTP ----------------------------------------------------------------------------------------


class InfoResponse(_Message):
    """`GET /v1/info`: whether the model is loaded, and what it is once it is."""

    status: Literal["loading", "ready", "error"]
    version: str
    spec: str = Field(description="The model spec the server was started with.")
    model: ModelInfoOut | None = Field(None, description="Set when status is ready.")
    error: str | None = Field(None, description="Set when status is error: why the model did not load.")
    limits: LimitsOut


class HealthResponse(_Message):
    """`GET /healthz`: the process answers (liveness). It says nothing more, because it is the one
    route open without a token; whether the model is loaded is `GET /v1/info`."""

    status: Literal["ok"] = "ok"


class ErrorResponse(_Message):
    """The body of every 4xx/5xx answer camcap itself gives (FastAPI's own 422s keep their shape)."""

    code: str = Field(description="One of ErrorCode's values.")
    detail: str = Field(description="What happened, what was expected and what to do.")


class CaptionResponse(_Message):
    caption: str
    model: str
    task: str = Field(description="The task kind: caption, query, detect or point.")
    random_weights: bool
    inference_ms: float
    timings: StageTimings
    boxes: list[BoxOut] = []
    points: list[PointOut] = []


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field, e.g. `task: Input should be 'caption', 'query', ...`."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "message"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
