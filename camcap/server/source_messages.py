"""The wire schema of live sources: `GET /v1/sources` and the `WS /v1/sources/stream` events.

Kept beside messages.py (the page's stream) rather than in it: sources are a separate channel
with their own subscribe message. Every URL here is redacted (camcap.sources.redact).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceCaptionOut(_Message):
    at: str = Field(description="When the caption was final, ISO 8601, UTC.")
    text: str
    task: str
    model: str
    frame_age_ms: float = Field(description="From the frame's arrival (decoded) to its caption.")
    inference_ms: float


class SourceOut(_Message):
    name: str
    url: str = Field(description="The source's URL with credentials and query tokens redacted (***).")
    kind: Literal["rtsp", "http", "device", "file"]
    status: Literal["waiting", "connecting", "up", "down", "ended", "stopped"] = Field(
        description="waiting: for the model to load; down: failed, retrying (see error)."
    )
    error: str | None = Field(None, description="Why the source is down, redacted.")
    last_caption: SourceCaptionOut | None = None
    frames_read: int
    captioned: int
    reconnects: int
    decode_errors: int


class RouteNotFound(BaseModel):
    """The router's own 404 body, for a path no route matches."""

    detail: str


class SourcesResponse(_Message):
    sources: list[SourceOut]


# --- WS /v1/sources/stream ---------------------------------------------------------------------


class SubscribeMessage(_Message):
    """client -> server: which sources' events to receive (all when `sources` is left out)."""

    type: Literal["config"] = "config"
    sources: list[str] | None = Field(None, max_length=64, description="Source names; None: every source.")


class SubscribedEvent(_Message):
    type: Literal["subscribed"] = "subscribed"
    sources: list[str]


class SourceCaptionEvent(_Message):
    type: Literal["source_caption"] = "source_caption"
    source: str
    seq: int = Field(description="The source's frame counter.")
    at: str
    text: str
    task: str
    model: str
    frame_age_ms: float
    inference_ms: float


class SourceTokenEvent(_Message):
    type: Literal["source_token"] = "source_token"
    source: str
    seq: int
    text: str = Field(description="More text of the caption being written (a delta).")


class SourceStatusEvent(_Message):
    type: Literal["source_up", "source_down", "source_ended"]
    source: str
    reason: str | None = None
    error: str | None = None
    retry_in_s: float | None = None
