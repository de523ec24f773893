"""The one model of the process: loaded once, in the background, and shared by every client.

Loading can take minutes (a first download, a large checkpoint), so it runs on a thread started
by the app's lifespan: the server answers at once, `GET /v1/info` says "loading", and sockets get
their `ready` event when the model is there. Results are published on the event loop, so route
code reads `status`, `info` and `scheduler` without locks.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import threading
from collections.abc import Iterator

import anyio.to_thread
from PIL import Image

from camcap.config import Settings
from camcap.engine.events import SchedulerObserver
from camcap.engine.scheduler import Scheduler
from camcap.engine.timing import monotonic
from camcap.errors import CamcapError
from camcap.models.base import Captioner, ModelInfo, Task, TaskKind
from camcap.models.registry import create_captioner

logger = logging.getLogger(__name__)


class ModelStatus(str, enum.Enum):
    LOADING = "loading"  # the loader thread is building or setting up the backend
    READY = "ready"  # loaded, checked, and the scheduler's worker is running
    ERROR = "error"  # loading failed; `error` says why and what to do


class ModelHost:
    """Owns the captioner's lifecycle and the scheduler in front of it.

    `start()` (on the event loop) begins loading on a thread; `aclose()` stops the scheduler and
    releases the model. A captioner passed in is owned from then on: set up at start, closed at
    close, like one the host builds from `settings.model`.
    """

    def __init__(
        self, settings: Settings, captioner: Captioner | None = None, observer: SchedulerObserver | None = None
    ) -> None:
        """`observer`: told of the scheduler's events and batches (the server's metrics)."""
        self.settings = settings
        self._observer = observer
        self.status = ModelStatus.LOADING
        self.error: str | None = None
        self.info: ModelInfo | None = None
        self.scheduler: Scheduler | None = None
        self._given = captioner
        self._captioner: Captioner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settled: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Begin loading the model on a background thread. Call on the event loop."""
        if self._thread is not None:
            raise RuntimeError("ModelHost.start() was already called; the model loads once per app.")
        self._loop = asyncio.get_running_loop()
        self._settled = asyncio.Event()
        # A daemon thread: a download cannot be interrupted, and must not keep a stopped server alive.
        self._thread = threading.Thread(target=self._load, name="camcap-model-loader", daemon=True)
        self._thread.start()

    async def wait_settled(self) -> None:
        """Return once loading has finished, whether it succeeded or failed."""
        if self._settled is None:
            raise RuntimeError("ModelHost.start() must be called (by the app's lifespan) before waiting on it.")
        await self._settled.wait()

    async def aclose(self) -> None:
        """Stop the scheduler and release the model (the blocking part runs on a thread)."""
        # Flag and detach on the loop, the thread `_settle` runs on, so a load that finishes right
        # now is released exactly once: here, or by `_settle` seeing the flag.
        self._closed = True
        scheduler, captioner = self.scheduler, self._captioner
        self.scheduler, self._captioner = None, None
        if self._thread is not None and self._thread.is_alive():
            logger.info("Stopping while the model is still loading; it is released when loading ends.")
        await anyio.to_thread.run_sync(_release, scheduler, captioner)

    # --- the loader thread ---------------------------------------------------------------------

    def _load(self) -> None:
        spec = self.settings.model
        logger.info("Loading model %s", spec)
        started = monotonic()
        captioner: Captioner | None = None
        scheduler: Scheduler | None = None
        error: str | None = None
        try:
            captioner = self._given
            if captioner is None:  # built here, on the thread: a random: spec writes a checkpoint
                captioner = create_captioner(spec, self.settings.model_options())
            captioner.setup()
            check_captioner(captioner)
            scheduler = Scheduler(
                captioner,
                max_batch=self.settings.max_batch,
                batch_window_ms=self.settings.batch_window_ms,
                stream_options=self.settings.stream_options(),
                observer=self._observer,
            )
            scheduler.start()
        except Exception as exc:
            if isinstance(exc, CamcapError):
                error = str(exc)
                logger.error("The model %s cannot be used: %s", spec, error)
            else:
                error = f"Loading the model {spec} failed: {type(exc).__name__}: {exc}"
                logger.exception("Loading the model %s failed", spec)
            _release(scheduler, captioner)
            captioner, scheduler = None, None
        else:
            info = captioner.info
            logger.info(
                "Model %s ready on %s (%s, %s backend, batch up to %d) in %.1f s",
                info.name,
                info.device,
                info.dtype,
                info.backend,
                scheduler.max_batch,
                monotonic() - started,
            )
            if info.random_weights:
                logger.warning("Model %s has random weights: its captions are meaningless words.", info.name)
            if info.frames_leave_network:
                logger.warning(
                    "Frames leave this machine: every frame is sent to %s, a server beyond this machine and its "
                    "private network (the model %s runs there).",
                    info.frames_sent_to,
                    info.name,
                )
            elif info.frames_sent_to is not None:
                logger.info("Frames are sent to %s on this machine or its private network.", info.frames_sent_to)
            if info.demo:
                logger.warning("Model %s is a demo model: it only names coloured shapes and their side.", info.name)
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._settle, captioner, scheduler, error)
        except RuntimeError:  # the loop is gone: the server stopped while we were loading
            _release(scheduler, captioner)

    def _settle(self, captioner: Captioner | None, scheduler: Scheduler | None, error: str | None) -> None:
        # On the event loop, so readers of these fields see them change all at once.
        if self._closed:
            _release(scheduler, captioner)
            return
        if error is not None or captioner is None or scheduler is None:
            self.status, self.error = ModelStatus.ERROR, error or "The model failed to load."
        else:
            self._captioner, self.scheduler, self.info = captioner, scheduler, captioner.info
            self.status = ModelStatus.READY
        assert self._settled is not None
        self._settled.set()


def check_captioner(captioner: Captioner) -> None:
    """Check a set-up backend against the Captioner protocol before any client relies on it.

    Raises `TypeError` naming the fix: this is a plug-in bug, not a user error.
    """
    name = type(captioner).__name__
    info = captioner.info
    if not isinstance(info, ModelInfo):
        raise TypeError(f"{name}.info returned {type(info).__name__}; it must return a camcap ModelInfo.")
    if not info.tasks or info.max_batch < 1 or info.input_size < 1 or info.concurrency < 1:
        raise TypeError(
            f"{name}.info is incomplete: {info}; it needs a task, max_batch, input_size and concurrency >= 1."
        )
    if inspect.iscoroutinefunction(captioner.generate) or inspect.isasyncgenfunction(captioner.generate):
        raise TypeError(
            f"{name}.generate is async; camcap backends are synchronous generators that the scheduler "
            "steps through on its worker thread. Write it as a plain `def` that `yield`s events."
        )
    # Calling a lazy generate does no work until the first next(); closing it right away is free.
    probe = captioner.generate([(Image.new("RGB", (info.input_size, info.input_size)), _probe_task(info.tasks[0]))])
    try:
        if not isinstance(probe, Iterator):
            raise TypeError(
                f"{name}.generate returned {type(probe).__name__}, not a lazy iterator; yield events "
                "(make it a generator) so tokens stream and a stale caption can be cancelled."
            )
    finally:
        close = getattr(probe, "close", None)
        if close is not None:
            close()


def _probe_task(kind: TaskKind) -> Task:
    if kind is TaskKind.CAPTION:
        return Task.caption("short")
    if kind is TaskKind.QUERY:
        return Task.query("What is in the picture?")
    return Task(kind, target="object")


def _release(scheduler: Scheduler | None, captioner: Captioner | None) -> None:
    if scheduler is not None:
        scheduler.close()
    if captioner is not None:
        try:
            captioner.close()
        except Exception:
            logger.exception("Closing the model failed")
