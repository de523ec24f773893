"""The moment the server begins to stop, for requests that would otherwise wait it out.

uvicorn stops in two steps: it waits up to `timeout_graceful_shutdown` for requests in progress,
then cancels them (logging "Exception in ASGI application" with a traceback, and answering 500).
A request that is only waiting (a body that is still arriving, a caption the model has not made
yet) gains nothing from that wait. `ClosingNotice` is set when the stop begins
(`camcap.server.serving.CamcapServer`), and such requests answer `503 server_closing` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class ServerClosingError(Exception):
    """The server began to stop while this request was waiting."""


class ClosingNotice:
    """Set once, on the event loop, when the server begins to stop."""

    def __init__(self) -> None:
        self.closing = False
        self._event: asyncio.Event | None = None  # made on the loop, when first waited on

    def begin(self) -> None:
        """The server is stopping: wake every request waiting through `unless_closing`."""
        self.closing = True
        if self._event is not None:
            self._event.set()

    async def unless_closing(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Await `awaitable`, unless the server begins to stop first (`ServerClosingError`) or
        `timeout` seconds pass (`TimeoutError`); either way `awaitable` is cancelled."""
        work = asyncio.ensure_future(awaitable)
        if self.closing:
            work.cancel()
            raise ServerClosingError
        if self._event is None:
            self._event = asyncio.Event()
        closing = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({work, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        if self.closing:
            raise ServerClosingError
        raise TimeoutError
