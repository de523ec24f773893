"""The real server, in this process: `create_app` served by uvicorn on 127.0.0.1, on a thread
(camcap.server.threaded).

Real sockets, real uvicorn and websockets, the same app `camcap serve` runs: no TestClient. It
runs in-process so that it serves the very captioner the direct-model baseline calls, loaded
once; each configuration the bench compares (batching on or off, ...) gets a fresh app around
that shared model, which it may not close.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from types import TracebackType

from starlette.routing import WebSocketRoute

from camcap.bench._base64_route import Base64StreamRoute
from camcap.config import Settings
from camcap.models.base import Captioner, Event, ModelInfo, Request
from camcap.server.app import create_app, uvicorn_options
from camcap.server.host import ModelHost, ModelStatus
from camcap.server.threaded import serve_in_thread

BASE64_PATH = "/bench/base64-stream"
# The model is loaded before any bench server starts: setup() only returns; anything longer is a bug.
_READY_TIMEOUT_S = 60.0


class SharedCaptioner(Captioner):
    """Lends a loaded captioner to one app: everything is passed through except `close()`,
    because the bench, not the app, owns the model and reuses it for the next configuration."""

    def __init__(self, captioner: Captioner) -> None:
        self._captioner = captioner

    @property
    def info(self) -> ModelInfo:
        return self._captioner.info

    def setup(self) -> None:
        self._captioner.setup()  # already loaded: returns at once

    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        return self._captioner.generate(requests)

    def close(self) -> None:
        """Nothing: the bench closes the model when every configuration is done."""


class BenchServer:
    """`create_app(settings)` around a shared captioner, listening on a free localhost port.

    Use as a context manager: entering starts uvicorn on a thread and returns once the model is
    ready (it is already loaded, so in well under a second); leaving stops it.
    """

    def __init__(self, captioner: Captioner, settings: Settings, *, deflate: bool = False) -> None:
        """`deflate=True` serves WebSockets as uvicorn does by default, accepting permessage-deflate,
        which `camcap serve` turns off: only to measure what turning it off saves."""
        self.settings = settings
        self.deflate = deflate
        self.app = create_app(settings, captioner=SharedCaptioner(captioner))
        # The base64-in-JSON transport exists only for comparison: mounted here, never in camcap.
        self.app.router.routes.append(WebSocketRoute(BASE64_PATH, Base64StreamRoute()))
        self._running = contextlib.ExitStack()
        self.port = 0

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> BenchServer:
        # As `camcap serve` runs uvicorn (cli/_serve.py), minus TLS: the same message limits.
        options = uvicorn_options(self.settings) | ({"ws_per_message_deflate": True} if self.deflate else {})
        with contextlib.ExitStack() as starting:
            _, self.port = starting.enter_context(serve_in_thread(self.app, **options))
            self._wait_ready()
            self._running = starting.pop_all()  # started and ready: stopped by __exit__ from here
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._running.close()

    def _wait_ready(self) -> None:
        host: ModelHost = self.app.state.host
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while host.status is ModelStatus.LOADING:
            if time.monotonic() > deadline:
                raise RuntimeError(f"The bench server's model was not ready within {_READY_TIMEOUT_S:.0f} s.")
            time.sleep(0.01)
        if host.status is not ModelStatus.READY:
            raise RuntimeError(f"The bench server could not use the model: {host.error}")
