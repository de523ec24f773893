"""Capture devices: each platform's FFmpeg syntax, the clear error for a device that is missing,
busy, forbidden or not a camera, and FFmpeg's `lavfi` test pattern standing in for a camera
through the same device code path (no camera exists on CI machines)."""

from __future__ import annotations

import errno
import queue

import pytest

from camcap.sources.devices import device_error, device_input
from camcap.sources.errors import SourceConfigError
from camcap.sources.reader import ReaderOptions, SourceChange, SourceReader, SourceState, classify_error
from camcap.sources.spec import parse_source
from tests.test_live_sources import Watch, watch_env  # noqa: F401 - watch_env is a fixture

PATTERN = "lavfi:testsrc=size=160x120:rate=10"


@pytest.mark.parametrize(
    ("text", "platform", "expected"),
    [
        ("/dev/video0", "linux", ("v4l2", "/dev/video0")),
        ("2", "linux", ("v4l2", "/dev/video2")),
        ("v4l2:/dev/video1", "darwin", ("v4l2", "/dev/video1")),
        ("0", "darwin", ("avfoundation", "0")),
        ("avfoundation:FaceTime HD Camera", "darwin", ("avfoundation", "FaceTime HD Camera")),
        ("video=Integrated Camera", "win32", ("dshow", "video=Integrated Camera")),
        ("dshow:video=USB Capture", "win32", ("dshow", "video=USB Capture")),
        (PATTERN, "linux", ("lavfi", "testsrc=size=160x120:rate=10")),
    ],
)
def test_each_platforms_device_syntax_becomes_ffmpegs_input(text, platform, expected):
    assert parse_source(text).kind == "device"
    assert device_input(text, platform) == expected


def test_device_sources_are_named_after_the_device():
    assert parse_source("/dev/video0").name == "video0"
    assert parse_source("video=Integrated Camera").name == "Integrated-Camera"
    assert parse_source("desk=video=USB Capture").name == "desk"
    assert parse_source("0").name == "camera0"
    assert parse_source(PATTERN).name == "testsrc"
    # "video" is still a name when a URL follows it.
    spec = parse_source("video=rtsp://10.0.0.2/s1")
    assert (spec.name, spec.kind) == ("video", "rtsp")


def test_a_camera_number_on_windows_asks_for_its_name():
    with pytest.raises(SourceConfigError, match="video=NAME"):
        device_input("0", "win32")


def first_change(text: str) -> SourceChange:
    events: queue.Queue[SourceChange] = queue.Queue()
    reader = SourceReader(parse_source(text), on_change=events.put, options=ReaderOptions(backoff_first_s=5))
    reader.start()
    try:
        return events.get(timeout=30)
    finally:
        reader.stop()


def test_a_missing_device_says_so_and_how_to_list_devices():
    change = first_change("/dev/video7")
    assert (change.state, change.reason) == (SourceState.DOWN, "not_found")
    assert change.error == "video7: no such device: /dev/video7; list devices with `v4l2-ctl --list-devices`."


def test_a_file_that_is_not_a_camera_says_so():
    change = first_change("v4l2:/dev/null")
    assert change.reason == "not_found" and "/dev/null is not a video capture device" in (change.error or "")


def test_another_platforms_device_input_is_a_clear_error():
    change = first_change("dshow:video=Integrated Camera")
    assert change.reason == "invalid"
    assert "cannot open dshow devices" in (change.error or "") and "/dev/videoN on Linux" in (change.error or "")


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EBUSY, "device busy: /dev/video0 is in use by another program"),
        (errno.EACCES, "permission denied opening /dev/video0; on Linux add your user to the video group"),
    ],
)
def test_a_busy_or_forbidden_device_is_a_clear_error(code, words):
    # No camera here to hold busy or lock away: FFmpeg reports both as the errno the device gave.
    spec = parse_source("/dev/video0")
    error = classify_error(OSError(code, "x"), spec, 10.0)
    assert words in str(error)
    assert device_error(OSError(errno.ECONNRESET, "x"), "cam", "/dev/video0") is None  # not about the device


def test_a_test_pattern_device_is_captioned_like_a_camera(watch_env):  # noqa: F811
    watch = Watch([PATTERN, "--max-captions", "2"], watch_env)
    assert watch.finish() == 0, "\n".join(watch.err)
    rows = watch.captions()
    assert len(rows) == 2 and {row["source"] for row in rows} == {"testsrc"}
    assert watch.events()[0]["type"] == "source_up"
