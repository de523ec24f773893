"""Serve an app on a thread of this process, on a free 127.0.0.1 port: `serve_in_thread`.

For code that needs the real server beside it rather than in a subprocess: `camcap bench` (whose
direct-model baseline must call the very model the server serves) and the tests that need real
sockets (a browser, TLS, a shutdown that closes open WebSockets, which TestClient never does).
The socket is bound before uvicorn starts, so the port is known and nothing can take it meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


@contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[tuple[uvicorn.Server, int]]:
    """Serve `app` with uvicorn until the block ends; yields the server and its port.

    `config`: more `uvicorn.Config` options (camcap's app wants `camcap.server.app.uvicorn_options`).
    Raises RuntimeError if uvicorn does not start within START_TIMEOUT_S, or does not stop within
    STOP_TIMEOUT_S after a block that ended normally (after an exception, that is only logged).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: a library must not reconfigure the process's logging.
    options = {"log_level": "warning", "log_config": None} | config
    server = uvicorn.Server(uvicorn.Config(app, **options))

    def run() -> None:
        # uvicorn sys.exit()s when the app fails to start (it has logged why); on a thread that would
        # be an unhandled exception, and the caller learns of it below anyway.
        with contextlib.suppress(SystemExit):
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name="camcap-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("The server stopped while starting; see the log above for why.")
            if time.monotonic() > deadline:
                raise RuntimeError(f"The server did not start within {START_TIMEOUT_S:.0f} s.")
            time.sleep(0.01)
        yield server, port
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        sock.close()
        if thread.is_alive():
            message = f"The server did not stop within {STOP_TIMEOUT_S:.0f} s."
            if sys.exc_info()[0] is not None:
                logger.warning(message)  # do not hide the exception that ended the block
            else:
                raise RuntimeError(message)
