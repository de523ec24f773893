"""Sources as typed (NAME=URL), credentials redacted everywhere, and the reconnect backoff."""

from __future__ import annotations

import random

import pytest

from camcap.sources.errors import SourceConfigError
from camcap.sources.reader import Backoff
from camcap.sources.redact import redact_text, redact_url
from camcap.sources.spec import parse_source, parse_sources


def test_names_kinds_and_defaults(tmp_path):
    clip = tmp_path / "demo clip.mp4"
    clip.write_bytes(b"x")
    assert parse_source("door=rtsp://u:p@10.0.0.2:554/s1").name == "door"
    assert parse_source("rtsp://10.0.0.2/s1?a=b").name == "10.0.0.2"
    assert parse_source("rtsps://cam.local/s").kind == "rtsp"
    assert parse_source("https://cam.local/live.m3u8").kind == "http"
    assert (parse_source("/dev/video0").kind, parse_source("/dev/video0").name) == ("device", "video0")
    spec = parse_source(str(clip), realtime=True, loop=True)
    assert (spec.kind, spec.name, spec.loop) == ("file", "demo-clip", True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://cam/x", "not ftp://"),
        ("/no/such/file.mp4", "no such file"),
        ("bad name=rtsp://cam/x", "Source name"),
    ],
)
def test_bad_sources_are_clear_errors(text, message):
    with pytest.raises(SourceConfigError, match=message):
        parse_source(text)


def test_a_file_needs_realtime(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(SourceConfigError, match="--realtime"):
        parse_source(str(tmp_path / "a.mp4"))


def test_two_sources_may_not_share_a_name():
    with pytest.raises(SourceConfigError, match="named 'cam'"):
        parse_sources(["rtsp://cam/a", "rtsp://cam/b"])


def test_credentials_and_query_tokens_are_redacted():
    url = "rtsp://admin:s3cr%40t@10.0.0.2:554/live?channel=1&token=abc123XYZ&apikey=k9"
    shown = redact_url(url)
    assert shown == "rtsp://***@10.0.0.2:554/live?channel=1&token=***&apikey=***"
    spec = parse_source(f"door={url}")
    assert "s3cr" not in repr(spec) and "s3cr" not in str(spec) and spec.display_url == shown


def test_redact_text_removes_secrets_wherever_ffmpeg_puts_them():
    url = "rtsp://admin:s3cr%40t@10.0.0.2/live?token=abc123XYZ"
    text = f"[Errno 111] Connection refused: '{url}' (user admin, password s3cr@t, token abc123XYZ)"
    cleaned = redact_text(text, url)
    for secret in ("s3cr", "abc123XYZ", "admin"):
        assert secret not in cleaned
    assert "10.0.0.2" in cleaned
    assert redact_text("failed: http://bob:pw@host/x") == "failed: http://***@host/x"


def test_backoff_doubles_to_its_cap_with_jitter_and_resets():
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.2, rng=random.Random(7))
    waits = [backoff.next() for _ in range(7)]
    for wait, base in zip(waits, [1, 2, 4, 8, 16, 30, 30], strict=True):
        assert base * 0.8 <= wait <= base * 1.2
    assert len({round(wait / base, 6) for wait, base in zip(waits, [1, 2, 4, 8, 16, 30, 30], strict=True)}) > 1
    backoff.reset()
    assert 0.8 <= backoff.next() <= 1.2
