"""When the model sees: one waiting slot per stream, one model worker, fair batches.

Freshness first (DESIGN.md): a stream holds at most ONE frame waiting for the model, and a newer
frame replaces it (counted as skipped), so nothing queues however fast frames arrive. A single
worker thread owns the model (backends are not thread-safe) and serves streams round robin: the
streams with a waiting frame are taken least-recently-served first, up to the model's max batch,
and run as one batch. Events travel back to each stream on its event loop through
`call_soon_threadsafe`.

Closing a stream drops its waiting frame at once. If its frame is being captioned, the worker
stops reading the backend's iterator and closes it, which cancels the generation; when other
streams share the batch, their items finish and only the closed stream's events are dropped.

Three policies make the model's time count, each in its own module:
- Change gating (engine/change.py): a frame that barely differs from the last frame the stream
  handed to the model (same task) is answered `FrameUnchanged` at once and never reaches the slot.
- Stale-work cut (engine/stale.py): when a stream's frame is being captioned and a much newer,
  changed frame of the same stream waits, the generation is stopped (the backend's iterator is
  closed), the old frame is answered `superseded`, and the newer one is taken next. Only when
  every unfinished item of the batch is stale (a batch shared with other streams is never cut for
  one of them), and never twice in a row for a stream, so a scene that keeps changing still gets
  captions.
- Batching window (engine/batching.py): when fewer frames wait than a batch holds and other
  active streams may send one soon, an idle model waits a little for them, so that streams whose
  frames arrive nearly together share one batch. Taking streams least recently served first
  (fairness) is unchanged.

A backend that declares `ModelInfo.concurrency > 1` (the `openai:` backend: the remote server
batches for itself) gets that many worker threads, each running its own generation, so one slow
request never holds the other streams' captions back. A stream still has at most one frame with
the model: while it is busy, its newer frames wait in its one slot (latest frame wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from camcap.engine.batching import DEFAULT_BATCH_WINDOW_MS, BatchWindow
from camcap.engine.change import ChangeGate
from camcap.engine.events import (
    Frame,
    FrameCaption,
    FrameError,
    FrameUnchanged,
    SchedulerObserver,
    Sink,
    StreamEvent,
    TokenDelta,
)
from camcap.engine.options import StreamOptions
from camcap.engine.stale import supersedes
from camcap.engine.timing import FrameTimings, monotonic, ms_since
from camcap.errors import CamcapError, UnsupportedTaskError
from camcap.models.base import Caption, Captioner, Event, ModelInfo
from camcap.server.messages import ErrorCode

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    """A frame from its slot to its caption. Mutable fields belong to whoever holds the job."""

    stream: Stream
    frame: Frame
    queued_at: float
    skipped: int = 0
    unchanged: int = 0
    taken_at: float = 0.0
    tokens: int = 0  # token events delivered so far
    after_cut: bool = False  # this frame replaced a cut one: it is never cut itself
    done: bool = False  # its Caption (or error) has been produced


class Stream:
    """One client's handle on the scheduler: a single waiting slot, and its events.

    Open it with `Scheduler.open_stream()` on the event loop that will read the events; call
    `submit`, `configure` and `close` from that loop. Events arrive in `events` (read with
    `next_event()`) or, if the stream was opened with a sink, are handed to the sink on the loop.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        stream_id: str,
        loop: asyncio.AbstractEventLoop,
        sink: Sink | None,
        options: StreamOptions,
        source: str | None = None,
    ) -> None:
        self.id = stream_id
        self.source = source  # the server source this stream captions, None for a client's stream
        self.events: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self.skipped_total = 0  # every frame this stream ever had replaced
        self.unchanged_total = 0  # every frame answered FrameUnchanged
        self.cut_total = 0  # every generation of this stream cut short (superseded)
        # Read by the worker without the lock: only ever replaced whole (it is frozen).
        self.options = options
        self._scheduler = scheduler
        self._loop = loop
        self._sink: Sink = sink or self.events.put_nowait
        # Guarded by the scheduler's lock.
        self._pending: _Job | None = None
        self._skipped = 0  # replaced since the worker last took a frame from this stream
        self._unchanged = 0  # answered unchanged since the worker last took a frame
        self._gate = ChangeGate()
        self._after_cut = False  # the stream's last generation was cut: its next one is not
        self._busy = False  # a frame of this stream is with the model (matters with concurrency > 1)
        self._active_at = monotonic()  # opened, or last put a frame in its slot (batching window)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, frame: Frame) -> None:
        """Put `frame` in the stream's slot, replacing (and counting as skipped) any frame still
        waiting there; or, if it looks like the last frame the model took, answer it with
        `FrameUnchanged` (a frame still waiting is then dropped as skipped: the scene is back to
        what the model is describing). Raises `UnsupportedTaskError` if the model cannot do
        `frame.task`."""
        self._scheduler._submit(self, frame)

    def configure(self, options: StreamOptions) -> None:
        """Use `options` from the next frame on. The next frame is captioned whatever it shows:
        a new configuration (usually a new task) deserves a fresh answer."""
        self._scheduler._configure(self, options)

    async def next_event(self) -> StreamEvent:
        """The next event of a stream opened without a sink."""
        return await self.events.get()

    def close(self) -> None:
        """Drop the waiting frame, cancel the caption in progress, and leave the rotation."""
        self._scheduler._close_stream(self)

    def _post(self, event: StreamEvent) -> None:
        """Hand `event` to the stream's loop. Safe from any thread."""
        # A closed loop raises RuntimeError: nobody is left to read the event.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: StreamEvent) -> None:
        # Runs on the loop, the thread that closes streams, so this check cannot race `close`.
        if not self._closed:
            self._scheduler._observe_event(event)
            self._sink(event)


class Scheduler:
    """Runs one captioner for many streams: freshest frame first, fair, batched, cancellable.

    `start()` launches the worker thread; `close()` stops it, cancelling the generation in
    progress, and joins it. The captioner must be set up before the scheduler is built.
    """

    def __init__(
        self,
        captioner: Captioner,
        *,
        max_batch: int | None = None,
        batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS,
        stream_options: StreamOptions | None = None,
        observer: SchedulerObserver | None = None,
    ) -> None:
        """`max_batch` caps the backend's own; `batch_window_ms` is the longest an idle model may
        wait for a batch to fill (engine/batching.py); `stream_options` are the defaults of streams
        opened without any; `observer` is told of every event delivered and every batch run."""
        self.info: ModelInfo = captioner.info
        self.max_batch = max(1, min(self.info.max_batch, max_batch or self.info.max_batch))
        self.concurrency = max(1, self.info.concurrency)
        self.batch_window = BatchWindow(batch_window_ms)
        self.stream_options = stream_options or StreamOptions()
        self._observer = observer
        self._captioner = captioner
        self._cond = threading.Condition()
        # Streams in least-recently-served order: the head is next in line (round robin).
        self._streams: OrderedDict[str, Stream] = OrderedDict()
        self._ids = itertools.count(1)
        self._stopping = False
        self._threads: list[threading.Thread] = []

    @property
    def stream_count(self) -> int:
        """Streams open right now."""
        with self._cond:
            return len(self._streams)

    @property
    def running(self) -> bool:
        """True while a worker thread is alive."""
        return any(thread.is_alive() for thread in self._threads)

    def start(self) -> None:
        """Start the model worker thread (`concurrency` of them)."""
        if self._threads:
            raise RuntimeError("The scheduler is already started; call start() once.")
        for number in range(self.concurrency):
            name = "camcap-model-worker" + (f"-{number}" if self.concurrency > 1 else "")
            self._threads.append(threading.Thread(target=self._work, name=name, daemon=True))
        for thread in self._threads:
            thread.start()

    def open_stream(
        self, sink: Sink | None = None, options: StreamOptions | None = None, *, source: str | None = None
    ) -> Stream:
        """A new stream whose events are delivered on the running event loop.

        `sink`, if given, receives every event (on the loop) instead of `Stream.events`.
        `options`: the stream's policies (default: the scheduler's `stream_options`).
        `source`: the name of the server source it captions, carried by its captions.
        """
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._stopping:
                raise RuntimeError("The scheduler is closed; no new stream can be opened.")
            stream = Stream(self, f"s{next(self._ids)}", loop, sink, options or self.stream_options, source)
            self._streams[stream.id] = stream
        return stream

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker, cancelling the caption in progress, and tell every open stream."""
        with self._cond:
            self._stopping = True
            streams = list(self._streams.values())
            for stream in streams:
                stream._pending = None
            self._cond.notify_all()
        deadline = monotonic() + timeout  # one deadline for all workers, however many there are
        for thread in self._threads:
            if thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - monotonic()))
            if thread.is_alive():
                logger.warning("The model worker did not stop within %.0f s; a model step is still running.", timeout)
        # After the join, so the notice is the last thing a stream hears, after any token in flight.
        for stream in streams:
            stream._post(FrameError(None, ErrorCode.SERVER_CLOSING, "The server is shutting down; reconnect later."))

    # --- called by Stream, on the event loop ---------------------------------------------------

    def _submit(self, stream: Stream, frame: Frame) -> None:
        # Checked here so that one stream's bad task never fails a batch shared with others.
        self.info.check_task(frame.task)
        now = monotonic()
        job = _Job(stream, frame, queued_at=now)
        unchanged: FrameUnchanged | None = None
        with self._cond:
            if stream._closed:
                raise RuntimeError(f"Stream {stream.id} is closed; open a new one with Scheduler.open_stream().")
            stopping = self._stopping
            if not stopping:
                # Compared with the frame the model took last, not the one waiting: a frame that
                # looks like what is being described makes the waiting one moot.
                same = stream._gate.check(frame, stream.options, now)
                if stream._pending is not None:
                    stream._skipped += 1
                    stream.skipped_total += 1
                if same is None:
                    stream._pending = job
                    stream._active_at = now
                    self._cond.notify()
                else:
                    reference, value = same
                    stream._pending = None
                    stream._unchanged += 1
                    stream.unchanged_total += 1
                    unchanged = FrameUnchanged(frame.seq, reference.seq, value, frame.captured_at)
        if stopping:
            stream._post(FrameError(frame.seq, ErrorCode.SERVER_CLOSING, "The server is shutting down."))
        elif unchanged is not None:
            stream._post(unchanged)

    def _configure(self, stream: Stream, options: StreamOptions) -> None:
        with self._cond:
            stream.options = options
            stream._gate.forget()

    def _close_stream(self, stream: Stream) -> None:
        with self._cond:
            stream._closed = True
            stream._pending = None
            self._streams.pop(stream.id, None)
        # A job in flight notices `closed` at the backend's next event (see _run_batch).

    def _observe_event(self, event: StreamEvent) -> None:
        if self._observer is not None:
            with _observer_errors_logged():
                self._observer.observe_event(event)

    # --- the worker thread ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            jobs = self._take_batch()
            if jobs is None:
                return
            try:
                self._run_batch(jobs)
            except Exception:
                # A bug here must not kill the only worker: every stream would hang.
                logger.exception("Bug in the scheduler while running a batch of %d", len(jobs))
            self._release(jobs)
            del jobs  # drop the images now, not when the next batch arrives

    def _release(self, jobs: list[_Job]) -> None:
        """The jobs' streams may give the model their next frame (with concurrency > 1, another
        worker may be waiting for just that)."""
        with self._cond:
            for job in jobs:
                job.stream._busy = False
            self._cond.notify_all()

    def _take_batch(self) -> list[_Job] | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                waiting = [s for s in self._streams.values() if s._pending is not None and not s._busy]
                if not waiting:
                    self._cond.wait()
                    continue
                delay = self._gathering_delay(waiting)
                if delay <= 0:
                    break
                self._cond.wait(delay)  # a submit wakes us early; then count again
            now = monotonic()
            jobs = []
            for stream in waiting[: self.max_batch]:
                job = stream._pending
                assert job is not None
                stream._pending = None
                job.skipped, stream._skipped = stream._skipped, 0
                job.unchanged, stream._unchanged = stream._unchanged, 0
                job.after_cut, stream._after_cut = stream._after_cut, False
                job.taken_at = now
                stream._busy = True
                stream._gate.remember(job.frame, now)
                self._streams.move_to_end(stream.id)  # served: to the back of the line
                jobs.append(job)
            return jobs

    def _gathering_delay(self, waiting: list[Stream]) -> float:
        """Seconds the worker should still wait for more streams' frames before taking a batch."""
        now = monotonic()
        window = self.batch_window
        # Streams worth waiting for: those with a frame, and the active ones that may send one soon.
        expected = sum(
            1
            for stream in self._streams.values()
            if stream._pending is not None or window.is_active(stream._active_at, now)
        )
        first = min(stream._pending.queued_at for stream in waiting if stream._pending is not None)
        return window.delay(
            first_waiting_at=first, waiting=len(waiting), expected=expected, max_batch=self.max_batch, now=now
        )

    def _run_batch(self, jobs: list[_Job]) -> None:
        started = monotonic()
        events: Iterator[Event] | None = None
        cut: list[_Job] = []
        may_cut = any(job.stream.options.cut_stale and not job.after_cut for job in jobs)
        try:
            events = self._captioner.generate([(job.frame.image, job.frame.task) for job in jobs])
            for event in events:
                job = jobs[event.index]
                # `closed` is written on the loop; reading a stale False here costs one event
                # that `_deliver` drops anyway.
                if isinstance(event, Caption):
                    job.done = True
                    if not job.stream.closed:
                        self._finish(job, event, started)
                elif not job.stream.closed:
                    job.tokens += 1
                    job.stream._post(TokenDelta(job.frame.seq, event.text))
                if self._stopping or _abandoned(jobs):
                    break  # closing the iterator below cancels the generation
                if may_cut and (cut := self._stale(jobs)):
                    break
        except Exception as exc:
            self._fail(jobs, exc)
        finally:
            _close_iterator(events)
        seconds = monotonic() - started
        with self._cond:
            self.batch_window.observe(seconds)
        if self._observer is not None:
            with _observer_errors_logged():
                self._observer.observe_batch(len(jobs), seconds)
        if self._stopping:
            return
        for job in cut:
            self._supersede(job)
        for job in jobs:
            if not job.done:
                with self._cond:
                    job.stream._gate.forget(job.frame.seq)  # no caption will describe it
            if not job.done and not job.stream.closed:
                job.stream._post(
                    FrameError(
                        job.frame.seq,
                        ErrorCode.MODEL_ERROR,
                        f"The {self.info.backend} backend ended without a caption for this frame; "
                        "this is a bug in the backend.",
                    )
                )

    def _finish(self, job: _Job, caption: Caption, started: float) -> None:
        end = monotonic()
        model = caption.timings
        timings = FrameTimings(
            receive_ms=job.frame.receive_ms,
            queue_ms=ms_since(job.queued_at, job.taken_at),
            image_decode_ms=job.frame.image_decode_ms,
            preprocess_ms=model.preprocess_ms,
            first_token_ms=model.first_token_ms,
            decode_ms=model.decode_ms,
            encode_ms=model.encode_ms,
            inference_ms=ms_since(started, end),
            total_ms=ms_since(job.frame.received_at, end),
            tokens=model.tokens,
        )
        logger.debug(
            "stream %s frame %d: %d tokens, total %.0f ms (queue %.0f, inference %.0f), %d skipped: %r",
            job.stream.id,
            job.frame.seq,
            timings.tokens,
            timings.total_ms,
            timings.queue_ms,
            timings.inference_ms,
            job.skipped,
            caption.text,
        )
        # Logged first, so that whoever reads the caption can also find its log line.
        job.stream._post(
            FrameCaption(
                job.frame.seq,
                caption,
                timings,
                job.skipped,
                job.frame.captured_at,
                job.unchanged,
                stream=job.stream.id,
                source=job.stream.source,
            )
        )

    def _stale(self, jobs: list[_Job]) -> list[_Job]:
        """The batch's unfinished jobs if every one of them is superseded (or closed), else []."""
        stale = []
        with self._cond:
            for job in jobs:
                if job.done or job.stream.closed:
                    continue
                newer = job.stream._pending
                if newer is None or not supersedes(newer.frame, job.frame, job.stream.options, after_cut=job.after_cut):
                    return []
                stale.append(job)
        return stale

    def _supersede(self, job: _Job) -> None:
        job.done = True
        with self._cond:
            job.stream._gate.forget(job.frame.seq)
            job.stream._after_cut = True
            job.stream.cut_total += 1
            newer = job.stream._pending
        logger.debug("stream %s frame %d: cut after %d tokens", job.stream.id, job.frame.seq, job.tokens)
        later = f"frame {newer.frame.seq}" if newer is not None else "a newer frame"
        job.stream._post(
            FrameError(
                job.frame.seq,
                ErrorCode.SUPERSEDED,
                f"Cut short after {job.tokens} tokens: {later} of this stream shows a changed scene and was "
                f"captured more than {job.stream.options.stale_after_ms:.0f} ms later, so it is captioned instead.",
            )
        )

    def _fail(self, jobs: list[_Job], exc: Exception) -> None:
        if isinstance(exc, UnsupportedTaskError):
            code, message = ErrorCode.UNSUPPORTED_TASK, str(exc)
        elif isinstance(exc, CamcapError):
            code, message = ErrorCode.MODEL_ERROR, str(exc)
        else:
            logger.exception("The model failed on a batch of %d frame(s)", len(jobs))
            code, message = ErrorCode.MODEL_ERROR, f"The model failed on this frame: {type(exc).__name__}: {exc}"
        for job in jobs:
            if not job.done:
                job.done = True
                with self._cond:
                    job.stream._gate.forget(job.frame.seq)  # no caption will describe it
                if not job.stream.closed:
                    job.stream._post(FrameError(job.frame.seq, code, message))


def _abandoned(jobs: list[_Job]) -> bool:
    """True when frames are still being captioned but every one of them belongs to a closed
    stream: nobody is waiting, so the generation should stop."""
    unfinished = [job for job in jobs if not job.done]
    return bool(unfinished) and all(job.stream.closed for job in unfinished)


@contextlib.contextmanager
def _observer_errors_logged() -> Iterator[None]:
    # Watching must never break what is watched: a bug in the metrics loses a sample, not a caption.
    try:
        yield
    except Exception:
        logger.exception("The scheduler's observer failed")


def _close_iterator(events: Iterator[Event] | None) -> None:
    close = getattr(events, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        logger.exception("The backend's iterator failed to close; the generation may still be running")
