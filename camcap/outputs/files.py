"""Output files that are never left half-written: write a temporary file beside the target, then
rename it into place (atomic on one file system).

On an error the temporary file is removed and the target is untouched (an older file of the same
name survives). On Ctrl+C the caller decides: `commit()` keeps what was written so far.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TextIO

from camcap.errors import CamcapError


class OutputFileError(CamcapError):
    """An output file or folder cannot be written."""


class AtomicTextFile:
    """A text file that appears at `path` only when `commit()` is called.

    Used as a context manager: leaving the block without `commit()` (an exception) discards it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        folder = self.path.parent
        try:
            handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=folder)
        except FileNotFoundError:
            raise OutputFileError(f"{self.path}: the folder {folder} does not exist; create it first.") from None
        except PermissionError:
            raise OutputFileError(f"{self.path}: permission denied writing in {folder}.") from None
        except OSError as exc:
            raise OutputFileError(f"{self.path}: cannot be written ({exc.strerror}).") from None
        self._temp = Path(temp)
        self.stream: TextIO = os.fdopen(handle, "w", encoding="utf-8", newline="\n")
        self.committed = False

    def commit(self) -> None:
        """Move the file into place."""
        self.stream.close()
        try:
            # mkstemp makes the file 0600; an output file gets the permissions any new file would.
            umask = os.umask(0)
            os.umask(umask)
            self._temp.chmod(0o666 & ~umask)
            self._temp.replace(self.path)
        except IsADirectoryError:
            self.discard()
            raise OutputFileError(f"{self.path} is a folder; name a file, or give several inputs.") from None
        except OSError as exc:
            self.discard()
            raise OutputFileError(f"{self.path}: cannot be written ({exc.strerror}).") from None
        self.committed = True

    def discard(self) -> None:
        """Remove the temporary file; the target is left as it was."""
        self.stream.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    def __enter__(self) -> AtomicTextFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.discard()
