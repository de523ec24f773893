"""Every message of the live channel (`WS /v1/stream`) and the HTTP API, as one schema.

Client -> server
    binary  a frame: either bare JPEG/PNG/WebP bytes, or FRAME_MAGIC + uint32 (big-endian) header
            length + UTF-8 JSON `FrameHeader` + image bytes. The page always sends the header so the
            server can echo the capture time and sequence number back.
    text    JSON `ConfigMessage` (what to ask of every frame).

Server -> client (JSON text, tagged by `type`)
    ready    once, after the socket is accepted: the model's info and the stream's limits
    token    a text delta of the caption being written for frame `seq`
    caption  the final text for frame `seq`, with every stage's timing
    error    something went wrong with one frame or message; the stream stays usable

A field never changes meaning; new fields may be added.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

FRAME_MAGIC = b"CCF1"  # "camcap frame, version 1"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- client -> server ----------------------------------------------------------------------------


class FrameHeader(_Message):
    seq: int = Field(ge=0, description="The client's frame counter, echoed back in events.")
    captured_at: float | None = Field(None, description="Capture time, ms since the Unix epoch (client clock).")
    sent_at: float | None = Field(None, description="Send time, ms since the Unix epoch (client clock).")


class ConfigMessage(_Message):
    type: Literal["config"] = "config"
    task: Literal["caption", "query", "detect", "point"] = "caption"
    length: Literal["short", "normal", "long"] = "normal"
    question: str | None = Field(None, max_length=500)
    target: str | None = Field(None, max_length=100)


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


class ReadyEvent(_Message):
    type: Literal["ready"] = "ready"
    stream_id: str
    model: ModelInfoOut
    version: str


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
    task: str
    model: str
    random_weights: bool
    captured_at: float | None = Field(None, description="Echo of the frame's capture time (client clock).")
    skipped: int = Field(0, description="Frames replaced by newer ones since the previous caption.")
    timings: StageTimings
    boxes: list[BoxOut] = []
    points: list[PointOut] = []


class ErrorEvent(_Message):
    type: Literal["error"] = "error"
    seq: int | None = None
    code: str = Field(description="Stable machine-readable code, e.g. invalid_image, bad_message.")
    message: str


ServerEvent = Annotated[ReadyEvent | TokenEvent | CaptionEvent | ErrorEvent, Field(discriminator="type")]


# --- HTTP ----------------------------------------------------------------------------------------


class CaptionResponse(_Message):
    caption: str
    model: str
    task: str
    random_weights: bool
    inference_ms: float
    timings: StageTimings
    boxes: list[BoxOut] = []
    points: list[PointOut] = []
