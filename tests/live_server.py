"""For the tests that start `camcap serve` as a subprocess: a free port, and a clean stop.

(Tests that need real sockets without a whole process use `camcap.server.threaded.serve_in_thread`.)"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable


def free_port() -> int:
    """A 127.0.0.1 port that was free a moment ago, for a `camcap serve --port` subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Ask a server subprocess to stop (SIGTERM, as Ctrl+C would), and kill it if it does not."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def sigint_reaches_child() -> Callable[[], None] | None:
    """A `preexec_fn` for a subprocess a test will send Ctrl+C (SIGINT) to.

    A shell's background job (`... &`, nohup) runs with SIGINT ignored, and a child inherits that
    through exec, so the signal would do nothing. Only then is the default restored in the child;
    otherwise no preexec_fn, which is not thread-safe.
    """
    return _default_sigint if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else None


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
