"""Capture devices as FFmpeg opens them, per platform, and what to say when one cannot be opened.

FFmpeg's device syntax differs by platform, so camcap accepts each platform's own spelling:
`/dev/video0` (Linux, v4l2), `avfoundation:0` or a bare `0` (macOS), `video=NAME` or
`dshow:video=NAME` (Windows), and an explicit `FORMAT:DEVICE` anywhere. A bare number is the
platform's camera of that number (`/dev/videoN` on Linux). `lavfi:GRAPH` (FFmpeg's filter sources,
e.g. `lavfi:testsrc=size=640x480:rate=10`) is a test pattern that goes through the same code path:
it stands in for a camera in tests and demos.
"""

from __future__ import annotations

import errno
import re
import sys

from camcap.sources.errors import SourceConfigError, SourceError, SourceNotFoundError

# FFmpeg input formats camcap opens as devices: "format:device".
DEVICE_FORMATS = ("v4l2", "avfoundation", "dshow", "lavfi")
_NUMBER = re.compile(r"^\d{1,3}$")
# How to list the cameras a platform has, per input format.
_LIST_DEVICES = {
    "v4l2": "list devices with `v4l2-ctl --list-devices`",
    "avfoundation": 'list devices with `ffmpeg -f avfoundation -list_devices true -i ""`',
    "dshow": "list devices with `ffmpeg -list_devices true -f dshow -i dummy`",
    "lavfi": "check the filter graph (e.g. lavfi:testsrc=size=640x480:rate=10)",
}
_PLATFORM_FORMAT = {"darwin": "avfoundation", "win32": "dshow"}


def is_device(text: str) -> bool:
    """True for a capture device spec in any platform's syntax (not a URL, not a file)."""
    head = text.split(":", 1)[0]
    return (
        text.startswith("/dev/video")
        or (head in DEVICE_FORMATS and ":" in text)
        or text.startswith("video=")
        or bool(_NUMBER.match(text))
    )


def device_input(url: str, platform: str | None = None) -> tuple[str, str]:
    """(FFmpeg input format, device name) for a device spec on `platform` (default: this one)."""
    platform = platform or sys.platform
    head, _, rest = url.partition(":")
    if head in DEVICE_FORMATS and rest:
        return head, rest
    if url.startswith("video="):
        return "dshow", url
    fmt = _PLATFORM_FORMAT.get(platform, "v4l2")
    if _NUMBER.match(url):
        if fmt == "dshow":
            raise SourceConfigError(
                f"Source {url!r}: Windows cameras are opened by name, not number: video=NAME "
                f"({_LIST_DEVICES['dshow']})."
            )
        return fmt, url if fmt == "avfoundation" else f"/dev/video{url}"
    return fmt, url


def device_name(url: str) -> str:
    """A default source name: `video0`, `Integrated Camera`, `testsrc`, `camera0`."""
    head, _, rest = url.partition(":")
    device = rest if head in DEVICE_FORMATS and rest else url
    device = device.removeprefix("video=")
    if head == "lavfi":
        return re.split(r"[=:,]", device, maxsplit=1)[0]
    if _NUMBER.match(device):
        return f"camera{device}"
    return device.rsplit("/", 1)[-1]


def device_error(exc: BaseException, name: str, url: str) -> SourceError | None:
    """The clear error for a device that cannot be opened, or None if `exc` is not about the device."""
    try:
        fmt, device = device_input(url)
    except SourceConfigError as config_error:
        return config_error
    listing = _LIST_DEVICES.get(fmt, "")
    if isinstance(exc, ValueError) and "format" in str(exc):  # PyAV: no container format 'dshow'
        return SourceConfigError(
            f"{name}: this FFmpeg build cannot open {fmt} devices ({device}); {fmt} is "
            f"{'macOS' if fmt == 'avfoundation' else 'Windows' if fmt == 'dshow' else 'Linux'}'s camera input. "
            "Write the device in this platform's syntax: /dev/videoN on Linux, avfoundation:N on macOS, "
            "video=NAME on Windows."
        )
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT or isinstance(exc, FileNotFoundError):
        return SourceNotFoundError(f"{name}: no such device: {device}; {listing}.")
    if code == errno.EBUSY:
        return SourceError(
            f"{name}: device busy: {device} is in use by another program; close it (on Linux `fuser {device}` "
            "names it) and camcap will take the device when it is free."
        )
    if code in (errno.EACCES, errno.EPERM):
        return SourceError(
            f"{name}: permission denied opening {device}; on Linux add your user to the video group "
            "(`sudo usermod -aG video $USER`, then log in again)."
        )
    if code in (errno.ENOTTY, errno.EINVAL, errno.ENODEV, errno.ENXIO):
        return SourceNotFoundError(f"{name}: {device} is not a video capture device; {listing}.")
    return None
