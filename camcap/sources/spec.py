"""What a live source is, from what the user typed: `NAME=URL` or just `URL`.

Kinds: `rtsp` (rtsp:// and rtsps://, over TCP), `http` (http(s):// MJPEG or HLS), `device` (a
capture device: /dev/videoN on Linux, `avfoundation:0` on macOS, `video=NAME` on Windows; see
devices.py) and `file` (a video file played at its own rate: for tests and demos).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from camcap.sources.devices import device_input, device_name, is_device
from camcap.sources.errors import SourceConfigError
from camcap.sources.redact import redact_url

SourceKind = Literal["rtsp", "http", "device", "file"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class SourceSpec:
    """One live source. `url` may hold credentials: show `display_url`, never `url`."""

    name: str
    url: str = field(repr=False)
    kind: SourceKind
    realtime: bool = False  # files only: play at the video's own rate (always on for live sources)
    loop: bool = False  # files only: start again at the end

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @property
    def tls(self) -> bool:
        """Over TLS: rtsps:// or https://."""
        return self.url.split("://", 1)[0].lower() in ("rtsps", "https")

    @property
    def hls(self) -> bool:
        """An HLS playlist (http(s)://.../NAME.m3u8), as opposed to an MJPEG stream."""
        return self.kind == "http" and urlsplit(self.url).path.lower().endswith((".m3u8", ".m3u"))

    def __str__(self) -> str:
        return f"{self.name} ({self.display_url})"


def parse_source(text: str, *, realtime: bool = False, loop: bool = False, index: int = 1) -> SourceSpec:
    """A `SourceSpec` from `NAME=URL` or `URL` (then named after its host, device or file).

    Raises `SourceConfigError` for an unknown scheme, a file that does not exist, or a bad name.
    """
    name, url = _split_name(text.strip())
    kind = source_kind(url)
    if kind == "file":
        if not Path(url).is_file():
            raise SourceConfigError(
                f"Source {redact_url(url)!r}: no such file, and not a URL (rtsp://, rtsps://, http://, https://) or "
                "a capture device (/dev/videoN)."
            )
        if not realtime:
            raise SourceConfigError(
                f"Source {url!r} is a video file: add --realtime to play it as a live source at its own rate "
                "(or caption it as a file with `camcap caption`)."
            )
    if kind == "device":
        device_input(url)  # raises for a syntax this platform cannot open (a camera number on Windows)
    name = name or _default_name(url, kind, index)
    if not _NAME.match(name):
        raise SourceConfigError(
            f"Source name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit "
            "(NAME=URL)."
        )
    return SourceSpec(name=name, url=url, kind=kind, realtime=realtime or kind != "file", loop=loop)


def parse_sources(texts: list[str], *, realtime: bool = False, loop: bool = False) -> list[SourceSpec]:
    """Several sources; their names must differ."""
    specs = [parse_source(text, realtime=realtime, loop=loop, index=i) for i, text in enumerate(texts, 1)]
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SourceConfigError(f"Two sources are named {duplicates[0]!r}; name each one: NAME=URL.")
    return specs


def source_kind(url: str) -> SourceKind:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in ("http", "https"):
        return "http"
    if scheme:
        raise SourceConfigError(
            f"Source {redact_url(url)!r}: camcap reads rtsp://, rtsps://, http(s):// (MJPEG or HLS), capture "
            f"devices and video files, not {scheme}://."
        )
    if is_device(url) and not Path(url).is_file():
        return "device"
    return "file"


def _split_name(text: str) -> tuple[str | None, str]:
    if "=" in text:
        head, tail = text.split("=", 1)
        # "rtsp://cam/x?a=b" has '=' too: only a name before any ':' or '/' counts. "video=NAME"
        # is a Windows camera (dshow), unless a URL or a path follows: "video=rtsp://..." is named.
        dshow = head == "video" and "://" not in tail and not tail.startswith(("/", "."))
        if head and not re.search(r"[:/?]", head) and not dshow:
            return head, tail
    return None, text


def _default_name(url: str, kind: SourceKind, index: int) -> str:
    if kind == "file":
        candidate = Path(url).stem
    elif kind == "device":
        candidate = device_name(url)
    else:
        candidate = urlsplit(url).hostname or ""
    candidate = re.sub(r"[^A-Za-z0-9_.-]", "-", candidate).strip("-.")[:64]
    return candidate or f"source{index}"
