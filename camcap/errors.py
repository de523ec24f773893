"""Errors a user can act on.

Every exception here carries a message that says what happened, what was expected and what to
do. The CLI prints them without a traceback and exits non-zero; the server turns them into 4xx
responses or `error` events. Anything else that escapes is a bug.
"""

from __future__ import annotations


class CamcapError(Exception):
    """Base class for errors caused by input or environment, not by a bug in camcap."""

    #: Process exit code the CLI uses for this kind of error.
    exit_code: int = 2


class UnknownModelSpecError(CamcapError, ValueError):
    """The model spec names no backend or architecture camcap knows."""


class ModelNotAvailableError(CamcapError):
    """The model's weights are neither cached nor downloadable right now."""

    exit_code = 3


class UnsupportedTaskError(CamcapError, ValueError):
    """The backend cannot do the task it was asked for."""


class InvalidImageError(CamcapError, ValueError):
    """The bytes or file given as a frame are not an image camcap can decode."""


class DeviceError(CamcapError):
    """The requested device or dtype cannot be used on this machine."""


class AccessConfigError(CamcapError, ValueError):
    """A token, origin or host given in the settings cannot be used as it is."""


class RemoteModelError(CamcapError):
    """The server behind an `openai:` model cannot be reached, refused a request or failed it."""
