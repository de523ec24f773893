"""Running the app under uvicorn so that it holds when connections or descriptors run out, and
stops the way the command line promises.

- `CamcapServer`: a `uvicorn.Server` that tells the app when it begins to stop (`ClosingNotice`:
  waiting requests answer 503 at once instead of being cancelled after 5 s with a traceback), and
  remembers which signal stopped it, so `camcap serve` can exit 130 on Ctrl+C.
- `guarded_http_protocol`: uvicorn's HTTP protocol with a cap on open connections (one more is
  closed at once, with a warning at most every 10 s) and a deadline on a new connection's first
  request headers (a client that sends half a header holds a descriptor until it passes).
- `raise_descriptor_limit`: the soft RLIMIT_NOFILE raised to the hard one, once, by the CLI.
- `RepeatedLogFilter`: asyncio logs "socket.accept() out of system resource" up to 100 times per
  retry when descriptors run out (a loop in `BaseSelectorEventLoop._accept_connection` that does
  not stop at the first failure); it is let through once per 10 s with a count of the rest.
- `ClosedListenerRetryFilter`: the same loop schedules a retry per failure; those that fire after
  shutdown closed the listening socket are tracebacks about nothing, and are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from camcap.server.closing import ClosingNotice

logger = logging.getLogger(__name__)

#: Descriptors kept for what is not a connection: the model's files, logs, spooled uploads.
DESCRIPTOR_RESERVE = 64
#: Used where the limit cannot be read (Windows): a number any system can hold.
FALLBACK_DESCRIPTORS = 1024
#: A repeated warning is logged at most once per this many seconds.
REPEAT_LOG_EVERY_S = 10.0


class CamcapServer(uvicorn.Server):
    """`uvicorn.Server` that sets `closing` when it begins to stop and records the stop signal."""

    def __init__(self, config: uvicorn.Config, closing: ClosingNotice | None = None) -> None:
        super().__init__(config)
        self.closing = closing
        self.stop_signal: int | None = None  # the first signal that asked it to stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.closing is not None:
            self.closing.begin()
        await super().shutdown(sockets)

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl+C (SIGINT)."""
        return self.stop_signal == signal.SIGINT


def descriptor_limit() -> int:
    """The process's soft limit on open file descriptors (FALLBACK_DESCRIPTORS where unknown)."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE
        return FALLBACK_DESCRIPTORS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_descriptor_limit() -> int:
    """Raise the soft descriptor limit to the hard one (many systems start at 1024 of 1M or more);
    return the soft limit in force afterwards. Process-wide: called by `camcap serve`, not the app."""
    try:
        import resource
    except ImportError:
        return FALLBACK_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # macOS refuses more than OPEN_MAX under an infinite hard limit
            logger.debug("Could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return descriptor_limit()


def connection_cap(max_connections: int | None, descriptors: int | None = None) -> int:
    """Open connections allowed at once: `max_connections`, never more than the descriptors leave."""
    available = max(16, (descriptors or descriptor_limit()) - DESCRIPTOR_RESERVE)
    return available if max_connections is None else min(max_connections, available)


class _Throttled:
    """Counts occurrences and says when one may be logged (at most once per `every_s`)."""

    def __init__(self, every_s: float = REPEAT_LOG_EVERY_S) -> None:
        self.every_s = every_s
        self.suppressed = 0
        self._last = -float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


def guarded_http_protocol(max_connections: int, header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (`http="auto"`), closing connections beyond `max_connections` and
    connections whose first request's headers have not arrived within `header_timeout_s`.

    WebSocket connections start as HTTP and count too. Pass as `uvicorn.Config(http=...)`.
    """
    refused = _Throttled()
    base: Any = AutoHTTPProtocol

    class GuardedHTTPProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            open_now = len(self.server_state.connections)
            if open_now > max_connections:
                if refused.due():
                    logger.warning(
                        "%d connections are open, the most allowed (max_connections); closing new ones "
                        "(%d more since the last warning).",
                        open_now - 1,
                        refused.take_suppressed(),
                    )
                transport.abort()
                return
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(header_timeout_s, self._first_request_too_slow, transport)

        def _first_request_too_slow(self, transport: asyncio.Transport) -> None:
            # Still no request, and not handed over to a WebSocket protocol (which needs no timer).
            if self.cycle is None and transport.get_protocol() is self and not transport.is_closing():
                logger.debug("Closing a connection that sent no complete request within %.0f s", header_timeout_s)
                transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

    return GuardedHTTPProtocol


class RepeatedLogFilter(logging.Filter):
    """Let a record whose message starts with `prefix` through at most once per `every_s`
    seconds, saying how many like it were dropped since; every other record passes."""

    def __init__(self, prefix: str, every_s: float = REPEAT_LOG_EVERY_S) -> None:
        super().__init__()
        self.prefix = prefix
        self._throttle = _Throttled(every_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.prefix):
            return True
        if not self._throttle.due():
            return False
        dropped = self._throttle.take_suppressed()
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like it in the last {self._throttle.every_s:.0f} s)"
            record.args = None
        return True


#: asyncio's words when accept() fails for want of descriptors (EMFILE) or memory.
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


#: How asyncio's exception handler begins the record of a failed accept retry.
START_SERVING_CALLBACK = "Exception in callback BaseSelectorEventLoop._start_serving"


class ClosedListenerRetryFilter(logging.Filter):
    """Drop asyncio's traceback for an accept retry that fires after the server closed its socket.

    When accept() fails for want of descriptors, asyncio removes the listening socket from the
    loop and schedules `_start_serving` to add it back 1 s later, once per failed accept (up to
    100 per burst: CPython issue 151615). Retries that fire after shutdown has closed the socket
    each log `ValueError: Invalid file descriptor: -1` with a traceback: hundreds of lines about a
    socket that is closed on purpose. Any other failure of `_start_serving` is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(START_SERVING_CALLBACK):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, ValueError) and "Invalid file descriptor" in str(error))
