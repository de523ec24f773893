"""A live source captioned through the scheduler, like a browser stream.

`LiveSource` joins a `SourceReader` (its own thread, newest frame only) to one scheduler stream,
the same slots, fairness, batching and change gating as the page's streams. It paces itself the
way the page's live mode does: one frame in flight; when its answer comes (a caption, `unchanged`,
an error), the newest frame the reader holds goes next. So the model takes the freshest frame when
it is free, and a source that is down only stops its own pump: the others never wait for it.

Frame age is counted from the frame's arrival (the moment the reader finished decoding it) to its
caption: `Frame.received_at` is the arrival, so the scheduler's `total_ms` is that age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import anyio.to_thread

from camcap.engine.change import signature
from camcap.engine.events import Frame, FrameCaption, FrameError, FrameUnchanged, StreamEvent
from camcap.engine.scheduler import Scheduler, Stream
from camcap.engine.timing import monotonic, ms_since
from camcap.models.base import Task
from camcap.outputs.record import CaptionEvent
from camcap.sources.convert import frame_to_image
from camcap.sources.reader import LiveFrame, ReaderOptions, SourceChange, SourceReader, SourceState
from camcap.sources.spec import SourceSpec

logger = logging.getLogger(__name__)

# After an `unchanged` answer, the next look waits this long: a still scene at 30 fps would
# otherwise cost a conversion and a comparison per frame for nothing.
UNCHANGED_PAUSE_S = 0.2


@dataclass
class SourceCounters:
    """Per-source numbers for metrics and `GET /v1/sources`."""

    captioned: int = 0
    unchanged: int = 0
    errors: int = 0


class LiveSource:
    """One source feeding one scheduler stream. `await run()` on the event loop; `stop()` ends it.

    `on_caption(CaptionEvent)`, `on_change(SourceChange)`, `on_event(StreamEvent)` (every
    scheduler event, tokens included) and `on_submit(Frame)` (each frame given to the model) are
    called on the loop.
    """

    def __init__(
        self,
        spec: SourceSpec,
        scheduler: Scheduler,
        task: Task,
        *,
        on_caption: Callable[[CaptionEvent], None] | None = None,
        on_change: Callable[[SourceChange], None] | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
        on_submit: Callable[[Frame], None] | None = None,
        started_at: float | None = None,
        reader_options: ReaderOptions | None = None,
    ) -> None:
        """`started_at` (monotonic): media time zero of the captions' `t` (default: now)."""
        self.spec = spec
        self.task = task
        self.counters = SourceCounters()
        self.last_caption: CaptionEvent | None = None
        self.started_at = monotonic() if started_at is None else started_at
        self._scheduler = scheduler
        self._on_caption = on_caption or (lambda event: None)
        self._on_change = on_change or (lambda change: None)
        self._on_event = on_event or (lambda event: None)
        self._on_submit = on_submit or (lambda frame: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_frame = asyncio.Event()
        # The scheduler's answers to this source's frames; None: stop() was called.
        self._answers: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._stopped = asyncio.Event()
        self.reader = SourceReader(spec, on_change=self._changed, on_frame=self._frame_arrived, options=reader_options)

    @property
    def state(self) -> SourceState:
        return self.reader.state

    @property
    def ended(self) -> bool:
        return self.reader.state is SourceState.ENDED

    async def run(self) -> None:
        """Read and caption until `stop()` (or a file without --loop ends)."""
        self._loop = asyncio.get_running_loop()
        stream = self._scheduler.open_stream(sink=self._deliver, source=self.spec.name)
        self.reader.start()
        try:
            await self._pump(stream)
        finally:
            stream.close()
            await anyio.to_thread.run_sync(self.reader.stop)

    def stop(self) -> None:
        self._stopped.set()
        self._new_frame.set()
        # Stop now, not after the caption in progress: closing the stream (in run()) cancels it,
        # so Ctrl+C in `camcap watch` does not wait for a long generation to finish.
        self._answers.put_nowait(None)

    # --- on the event loop ---------------------------------------------------------------------

    async def _pump(self, stream: Stream) -> None:
        last_seq = 0
        while not self._stopped.is_set():
            await self._new_frame.wait()
            self._new_frame.clear()
            if self._stopped.is_set() or (self.ended and self.reader.latest() is None):
                return
            latest = self.reader.latest()
            if latest is None or latest.seq == last_seq:
                if self.ended:
                    return
                continue
            last_seq = latest.seq
            frame = await anyio.to_thread.run_sync(self._frame, latest, stream.options.needs_signature)
            if self._stopped.is_set():
                return
            stream.submit(frame)
            self._on_submit(frame)  # alerts ask their questions about the same image
            answer = await self._answer(frame.seq)
            if answer is None:
                return
            if isinstance(answer, FrameUnchanged | FrameError):
                await self._pause(UNCHANGED_PAUSE_S)
            if self.ended:
                return
            self._new_frame.set()  # the newest frame goes next, if one arrived meanwhile

    async def _answer(self, seq: int) -> StreamEvent | None:
        """The scheduler's answer to frame `seq`, or None when the source is stopped first."""
        while True:
            event = await self._answers.get()
            if event is None or getattr(event, "seq", None) in (seq, None):
                return event

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    def _frame(self, latest: LiveFrame, with_signature: bool) -> Frame:
        """Convert the newest frame for the model (on a worker thread)."""
        started = monotonic()
        image = frame_to_image(latest.frame, self._scheduler.info.input_size, latest.rotation)
        frame_signature = signature(image) if with_signature else None
        return Frame(
            seq=latest.seq,
            image=image,
            task=self.task,
            received_at=latest.arrived_at,
            image_decode_ms=ms_since(started),
            signature=frame_signature,
        )

    def _deliver(self, event: StreamEvent) -> None:
        self._on_event(event)
        if isinstance(event, FrameCaption):
            self.counters.captioned += 1
            caption = CaptionEvent(
                t=max(0.0, monotonic() - self.started_at - event.timings.total_ms / 1000.0),
                text=event.caption.text,
                task=event.caption.task.kind.value,
                model=self._scheduler.info.name,
                inference_ms=event.timings.inference_ms,
                source=self.spec.name,
                at=datetime.now(timezone.utc),
                frame_age_ms=event.timings.total_ms,
            )
            self.last_caption = caption
            self._on_caption(caption)
            self._answers.put_nowait(event)
        elif isinstance(event, FrameUnchanged):
            self.counters.unchanged += 1
            self._answers.put_nowait(event)
        elif isinstance(event, FrameError):
            self.counters.errors += 1
            logger.warning("Source %s: frame %s: %s", self.spec.name, event.seq, event.message)
            self._answers.put_nowait(event)

    # --- called on the reader's thread ---------------------------------------------------------

    def _frame_arrived(self) -> None:
        self._call_soon(self._new_frame.set)

    def _changed(self, change: SourceChange) -> None:
        def deliver() -> None:
            self._on_change(change)
            if change.state is SourceState.ENDED:
                self._new_frame.set()

        self._call_soon(deliver)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback)
