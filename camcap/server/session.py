"""One WebSocket connection's state, and nothing shared.

The app holds what every connection shares (settings, the model host); a `Session` holds what
belongs to one socket: its state, the task it asks of its frames and the policies (change gating,
stale-work cut) its stream runs under, its scheduler stream, its sequence counter and its outbox,
the single queue the socket's writer drains, so that replies to bad messages and the model's
events reach the client through one sender, in order.
"""

from __future__ import annotations

import asyncio
import enum

from camcap.engine.events import FrameCaption, FrameError, FrameUnchanged, StreamEvent, TokenDelta
from camcap.engine.frames import DecodeBudget
from camcap.engine.options import StreamOptions
from camcap.engine.scheduler import Stream
from camcap.errors import UnsupportedTaskError
from camcap.models.base import ModelInfo, Task
from camcap.server.alert_messages import AlertEvent
from camcap.server.limits import StreamSlot
from camcap.server.messages import MAX_SEQ, ErrorCode, ErrorEvent, FrameHeader, ReadyEvent
from camcap.server.metrics import ServerMetrics


class SessionState(str, enum.Enum):
    WAITING = "waiting"  # accepted; the model is still loading, so frames are refused (not_ready)
    LIVE = "live"  # `ready` was sent; frames go to the scheduler
    CLOSED = "closed"  # the socket is gone or closing; the stream is closed, nothing more is sent


_ALLOWED = {
    SessionState.WAITING: {SessionState.LIVE, SessionState.CLOSED},
    SessionState.LIVE: {SessionState.CLOSED},
    SessionState.CLOSED: set(),
}


class CloseSocket(enum.Enum):
    """Outbox marker: the writer closes the socket with this code once everything before it is sent."""

    MODEL_FAILED = 1011
    TRY_AGAIN_LATER = 1013  # the server is full (max_streams)

    @property
    def reason(self) -> str:
        if self is CloseSocket.TRY_AGAIN_LATER:
            return "Too many streams; try again later."
        return "The model failed to load."


Outgoing = StreamEvent | ReadyEvent | ErrorEvent | AlertEvent | CloseSocket

# Token events a client may leave unread before later tokens are dropped. A page that sends
# frames but never reads must not grow the server's memory; captions are always delivered.
MAX_UNREAD_TOKENS = 2000


class Session:
    """The state of one `/v1/stream` connection."""

    def __init__(
        self,
        options: StreamOptions | None = None,
        slot: StreamSlot | None = None,
        metrics: ServerMetrics | None = None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        """`slot`: the stream's claim on a model slot, told of every answer (None: not limited).
        `metrics`, `decode_budget`: the server's counters and its budget of pixels being decoded."""
        self.slot = slot
        self.metrics = metrics
        self.decode_budget = decode_budget
        self.state = SessionState.WAITING
        self.task = Task.caption()  # what every frame is asked, until a config says otherwise
        # The server's policies; a config message may override some of them for this stream.
        self.default_options = options or StreamOptions()
        self.options = self.default_options
        self.info: ModelInfo | None = None
        self.stream: Stream | None = None
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.tokens_dropped = 0
        self._next_seq = 0

    def post(self, item: Outgoing) -> None:
        """Queue `item` for the client. Also the scheduler stream's sink (called on the loop)."""
        if self.state is SessionState.CLOSED:
            return
        if self.slot is not None and isinstance(item, FrameCaption | FrameUnchanged | FrameError | ErrorEvent):
            self.slot.answered(item.seq)
        if isinstance(item, TokenDelta) and self.outbox.qsize() >= MAX_UNREAD_TOKENS:
            self.tokens_dropped += 1
            return
        self.outbox.put_nowait(item)

    def go_live(self, stream: Stream, ready: ReadyEvent, info: ModelInfo) -> None:
        """The model is ready: send `ready`, then start taking frames."""
        self._move(SessionState.LIVE)
        self.stream, self.info = stream, info
        self.post(ready)
        # A config that arrived while the model loaded could not be checked against it until now.
        # (The default task is not reported here: if the model cannot caption, each frame says so.)
        if self.task == Task.caption():
            return
        try:
            info.check_task(self.task)
        except UnsupportedTaskError as exc:
            self.task = Task.caption()
            self.post(ErrorEvent(code=ErrorCode.UNSUPPORTED_TASK.value, message=f"{exc} Captioning instead."))

    def configure(self, task: Task, options: StreamOptions) -> None:
        """Apply a config message: later frames are asked `task` under `options`, and the next one
        is captioned whatever it shows."""
        self.task, self.options = task, options
        if self.stream is not None:
            self.stream.configure(options)

    def next_seq(self, header: FrameHeader | None) -> int:
        """The frame's sequence number: the client's if it sent a header, else the previous + 1."""
        seq = header.seq if header is not None else self._next_seq
        self._next_seq = seq + 1 if seq < MAX_SEQ else 0  # stays a number the page holds exactly
        return seq

    def close(self) -> None:
        """Close the stream (cancelling its caption in progress). Safe to call more than once."""
        if self.state is SessionState.CLOSED:
            return
        self._move(SessionState.CLOSED)
        if self.stream is not None:
            self.stream.close()

    def _move(self, state: SessionState) -> None:
        if state not in _ALLOWED[self.state]:
            raise RuntimeError(f"A session cannot go from {self.state.value} to {state.value}.")
        self.state = state
