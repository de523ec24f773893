"""Start the simulation's engines and router as subprocesses, and wait until they answer.

Subprocesses, not threads of the caller: the cameras, camcap's scheduler and the `openai:` backend
run in the caller's process, and the engines' step clocks must not wait on its GIL.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO

import httpx

START_TIMEOUT_S = 120.0  # a bound, not an expectation: a loaded 2-core machine imports slowly


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def started(module: str, args: Sequence[str], url: str, *, niceness: int = 0) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m module args...` until the block ends; wait until `url` answers 200 first.

    Raises `RuntimeError` with the child's output if it exits or stays silent too long.
    """
    command = [sys.executable, "-m", module, *args]
    # A file, not a pipe: a child writing to a pipe nobody reads would block once it fills.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=(lambda: _nice(niceness)) if niceness else None
        )
        try:
            _wait_ready(process, url, log)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _nice(niceness: int) -> None:
    import os

    os.nice(niceness)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"{' '.join(map(str, process.args))} exited with {process.returncode}:\n{output}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_S:.0f} s; is the machine overloaded?")
