"""HLS live sources: a playlist and segments written by FFmpeg's `hls` muxer as the "camera"
encodes, served over HTTP by the test; captions come from a real random-weight model through the
real scheduler, and the source comes back after an outage."""

from __future__ import annotations

import asyncio

from camcap.sources.live import LiveSource
from camcap.sources.reader import SourceState
from camcap.sources.spec import parse_source
from tests.cameras import HlsCamera
from tests.live_server import free_port
from tests.test_live_sources import Log, _with_sources, captioner, captions, changes  # noqa: F401 - a fixture


def test_an_hls_url_is_an_http_source_read_as_hls():
    spec = parse_source("lobby=https://user:pw@cdn.example/live/index.m3u8?token=abc")
    assert (spec.name, spec.kind, spec.hls) == ("lobby", "http", True)
    assert spec.display_url == "https://***@cdn.example/live/index.m3u8?token=***"
    assert parse_source("http://camera.local/mjpeg").hls is False


def test_an_hls_stream_is_captioned_through_an_outage(captioner, tmp_path):  # noqa: F811
    port = free_port()
    camera = HlsCamera(port, tmp_path / "first")

    async def scenario(log: Log, sources: list[LiveSource]) -> None:
        nonlocal camera
        await log.until(lambda items: len(captions(items)) >= 2)
        first = captions(log.items)[0]
        assert first.source == "lobby" and first.text and first.frame_age_ms is not None
        camera.stop()
        await log.until(lambda items: any(c.state is SourceState.DOWN for c in changes(items)))
        before = len(captions(log.items))
        camera = HlsCamera(port, tmp_path / "second")  # the stream comes back on the same address
        await log.until(lambda items: [c.state for c in changes(items)][-1] is SourceState.UP)
        await log.until(lambda items: len(captions(items)) >= before + 2)
        assert [c.type for c in changes(log.items)][:2] == ["source_up", "source_down"]
        assert sources[0].reader.stats.reconnects >= 1

    try:
        asyncio.run(_with_sources(captioner, [f"lobby={camera.url}"], scenario))
    finally:
        camera.stop()
