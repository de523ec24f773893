"""`camcap serve --log FILE`: every caption event as one line of JSON, for keeping or auditing.

Nothing about what the cameras see is written on the server unless this is asked for. When it
is, the log watches the scheduler (it is a `SchedulerObserver`, beside the metrics), so every
stream and every source that the one scheduler serves is in it, in the order captions finished.
Each line is the `caption` event the WebSocket sends (server/messages.py `CaptionEvent`), plus
`logged_at`, the server's wall-clock time (ISO 8601, UTC), `stream`, the scheduler's stream id (a
page's stream: the `stream_id` of its ready event), and `source`, the server source's name
(`camcap serve --source NAME=URL`; null for a page's stream).

Writing happens on a thread of its own (the stdlib's QueueHandler/QueueListener), so a slow disk
never holds up the event loop; each line is flushed as it is written. The file is rotated by size
(the stdlib's RotatingFileHandler): FILE, FILE.1, ... FILE.{LOG_BACKUPS}, oldest dropped.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from camcap.engine.events import FrameCaption, SchedulerObserver, StreamEvent
from camcap.errors import CamcapError
from camcap.models.base import ModelInfo
from camcap.server import convert

logger = logging.getLogger(__name__)

LOG_BACKUPS = 5  # rotated files kept beside the current one


class CaptionLog:
    """A JSON Lines log of caption events. `start()` opens the file, `close()` flushes and closes.

    `model_info`: returns the loaded model's info (None before it is loaded), for the `model` and
    `random_weights` fields; captions only come once it is loaded.
    """

    def __init__(self, path: Path, max_bytes: int, model_info: Callable[[], ModelInfo | None]) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._model_info = model_info
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._queue_handler = logging.handlers.QueueHandler(self._queue)
        self._listener: logging.handlers.QueueListener | None = None

    def start(self) -> None:
        """Open (or create) the file now, so a path that cannot be written fails at startup."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=self.max_bytes, backupCount=LOG_BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            raise CamcapError(
                f"cannot write the caption log {self.path} ({exc.strerror}); pick a writable file for --log."
            ) from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._listener.start()

    def close(self) -> None:
        """Write what is queued, then close the file."""
        if self._listener is None:
            return
        self._listener.stop()
        for handler in self._listener.handlers:
            handler.close()
        self._listener = None

    def write(self, event: FrameCaption) -> None:
        """Queue one caption event's line (returns at once; the listener thread writes it)."""
        info = self._model_info()
        if info is None or self._listener is None:
            return
        record = convert.caption_event(event, info).model_dump(mode="json")
        line = {
            "logged_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            # Whose caption: every stream and source share one file, so each line says which.
            "stream": event.stream,
            "source": event.source,
            **record,
        }
        # A LogRecord carrying the finished line: the queue hands it to the file handler as is.
        self._queue_handler.handle(logging.makeLogRecord({"msg": _json(line), "levelno": logging.INFO}))

    # --- SchedulerObserver ----------------------------------------------------------------------

    def observe_event(self, event: StreamEvent) -> None:
        if isinstance(event, FrameCaption):
            self.write(event)

    def observe_batch(self, size: int, seconds: float) -> None:
        pass


class ObserverGroup:
    """Several observers of one scheduler (the metrics and the log), told in order."""

    def __init__(self, *observers: SchedulerObserver) -> None:
        self.observers = observers

    def observe_event(self, event: StreamEvent) -> None:
        for observer in self.observers:
            observer.observe_event(event)

    def observe_batch(self, size: int, seconds: float) -> None:
        for observer in self.observers:
            observer.observe_batch(size, seconds)


def _json(line: dict[str, object]) -> str:
    # One physical line per event, whatever the caption holds (json escapes newlines).
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))
