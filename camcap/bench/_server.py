"""The real server, in this process: `create_app` served by uvicorn on 127.0.0.1, on a thread.

Real sockets, real uvicorn and websockets, the same app `camcap serve` runs: no TestClient. It
runs in-process so that it serves the very captioner the direct-model baseline calls, loaded
once; each configuration the bench compares (batching on or off, ...) gets a fresh app around
that shared model, which it may not close.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType

import uvicorn
from starlette.routing import WebSocketRoute

from camcap.bench._base64_route import Base64StreamRoute
from camcap.config import Settings
from camcap.models.base import Captioner, Event, ModelInfo, Request
from camcap.server.app import create_app, uvicorn_options
from camcap.server.host import ModelHost, ModelStatus

logger = logging.getLogger(__name__)

BASE64_PATH = "/bench/base64-stream"
_START_TIMEOUT_S = 60.0


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
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> BenchServer:
        # Bound here, before uvicorn starts, so the port is known and nothing can take it meanwhile.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        # As `camcap serve` runs uvicorn (cli/_serve.py), minus TLS: the same message limits.
        # log_config=None: a library must not reconfigure the process's logging.
        options = uvicorn_options(self.settings) | ({"ws_per_message_deflate": True} if self.deflate else {})
        config = uvicorn.Config(self.app, log_level="warning", log_config=None, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="camcap-bench-server", daemon=True
        )
        self._thread.start()
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _wait_ready(self) -> None:
        assert self._server is not None and self._thread is not None
        host: ModelHost = self.app.state.host
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not (self._server.started and host.status is not ModelStatus.LOADING):
            if not self._thread.is_alive():
                raise RuntimeError("The bench server stopped while starting; see the log above for why.")
            if time.monotonic() > deadline:
                raise RuntimeError(f"The bench server did not start within {_START_TIMEOUT_S:.0f} s.")
            time.sleep(0.01)
        if host.status is not ModelStatus.READY:
            raise RuntimeError(f"The bench server could not use the model: {host.error}")

    def _stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
            if self._thread.is_alive():
                logger.warning("The bench server did not stop within 30 s.")
        if self._socket is not None:
            self._socket.close()
