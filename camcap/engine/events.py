"""What goes into the scheduler (a decoded `Frame`) and what comes back to its stream (events).

Plain frozen records, shared by the scheduler, the server's WebSocket and HTTP routes and the
wire conversion (server/convert.py), so none of them imports another's internals to speak; and
the contract of whoever watches them (`SchedulerObserver`: the server's metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from camcap.engine.timing import FrameTimings, monotonic
from camcap.models.base import Caption, Task
from camcap.server.messages import ErrorCode

if TYPE_CHECKING:
    from PIL import Image

    from camcap.engine.change import FrameSignature


@dataclass(frozen=True)
class Frame:
    """One decoded frame and what to ask about it, ready for its stream's slot."""

    seq: int
    image: Image.Image
    task: Task
    received_at: float = field(default_factory=monotonic)  # monotonic() when its bytes arrived
    image_decode_ms: float = 0.0
    receive_ms: float | None = None  # client sent_at -> received, if the client said when it sent
    captured_at: float | None = None  # the client's capture time, echoed back untouched
    signature: FrameSignature | None = None  # for change gating; without one, the frame is captioned


@dataclass(frozen=True)
class TokenDelta:
    """More text of the caption being written for frame `seq` (a delta, not the text so far)."""

    seq: int
    text: str


@dataclass(frozen=True)
class FrameCaption:
    """The final result for frame `seq`."""

    seq: int
    caption: Caption
    timings: FrameTimings
    skipped: int  # frames of this stream replaced by newer ones since the previous caption
    captured_at: float | None
    unchanged: int = 0  # frames of this stream answered FrameUnchanged since the previous caption
    # Whose caption it is, for observers that watch every stream at once (the caption log): the
    # scheduler's stream id (the `stream_id` a page gets in its ready event), and the source's
    # name for a server source (`camcap serve --source NAME=URL`), None for a client's stream.
    stream: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class FrameUnchanged:
    """Frame `seq` was not captioned: it looks like frame `reference_seq`, whose caption (perhaps
    still being written) describes it too."""

    seq: int
    reference_seq: int
    difference: float  # camcap.engine.change.difference, below the stream's change_threshold
    captured_at: float | None


@dataclass(frozen=True)
class FrameError:
    """Frame `seq` (or the stream, if None) could not be captioned."""

    seq: int | None
    code: ErrorCode
    message: str


StreamEvent = TokenDelta | FrameCaption | FrameUnchanged | FrameError
Sink = Callable[[StreamEvent], None]


class SchedulerObserver(Protocol):
    """Who watches the scheduler (the server's metrics). Must be quick and must not raise."""

    def observe_event(self, event: StreamEvent) -> None:
        """An event delivered to an open stream; called on that stream's event loop."""

    def observe_batch(self, size: int, seconds: float) -> None:
        """A batch the model ran; called on the worker thread."""
