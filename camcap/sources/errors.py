"""Errors of video files and live sources, each saying what is wrong and what to do.

Live sources keep these distinct (wrong password, missing path, refused connection, unsupported
codec) because each has a different fix; a message never contains a credential (redact.py).
"""

from __future__ import annotations

from camcap.errors import CamcapError


class VideoError(CamcapError, ValueError):
    """A video file cannot be captioned: not a video, no video stream, empty, truncated, ..."""


class SourceError(CamcapError):
    """A live source cannot be read. Readers retry every kind: a camera can be fixed while camcap runs."""

    kind: str = "unreachable"  # short machine-readable reason, used in events and metrics


class SourceAuthError(SourceError):
    """The camera refused the credentials (or asked for some)."""

    kind = "unauthorized"


class SourceNotFoundError(SourceError):
    """The camera answered but has no stream at that path (or the device does not exist)."""

    kind = "not_found"


class SourceRefusedError(SourceError):
    """Nothing listens at that address and port."""

    kind = "refused"


class SourceTimeoutError(SourceError):
    """The camera did not answer, or stopped sending frames, within the timeout."""

    kind = "timeout"


class SourceCodecError(SourceError):
    """The stream is there but its video cannot be decoded by this build of FFmpeg."""

    kind = "unsupported_codec"


class SourceTLSError(SourceError):
    """The TLS handshake with an rtsps:// or https:// source failed: its certificate was not
    accepted, or it does not speak TLS on that port."""

    kind = "tls"


class SourceConfigError(SourceError, ValueError):
    """The source as written cannot be used (unknown scheme, bad NAME=URL)."""

    kind = "invalid"
