"""rtsps:// (RTSP over TLS) against GStreamer's RTSP server speaking TLS with a self-signed
certificate: read encrypted without verifying (FFmpeg's default, since cameras' certificates are
self-signed), verified against the camera's certificate, and a certificate that does not match is
its own clear error (reason `tls`), as is a camera that does not speak TLS."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from camcap.server.tls import ensure_self_signed_cert
from camcap.sources.reader import ReaderOptions, SourceChange, SourceReader, SourceState
from camcap.sources.spec import parse_source
from tests.cameras import RtspCamera
from tests.live_server import free_port

FAST = ReaderOptions(open_timeout_s=8, read_timeout_s=4, backoff_first_s=0.2, backoff_cap_s=1.0)


@pytest.fixture(scope="module")
def tls_camera(tmp_path_factory):
    cert, key = ensure_self_signed_cert(tmp_path_factory.mktemp("camera-tls"))
    camera = RtspCamera(free_port(), tls=(cert, key))
    yield camera, cert
    camera.kill()


def first_change(url: str, ca_file: Path | None = None) -> tuple[SourceChange, SourceReader]:
    events: queue.Queue[SourceChange] = queue.Queue()
    options = ReaderOptions(**{**FAST.__dict__, "tls_ca_file": str(ca_file) if ca_file else None})
    reader = SourceReader(parse_source(url), on_change=events.put, options=options)
    reader.start()
    try:
        return events.get(timeout=60), reader
    finally:
        reader.stop()


def test_an_rtsps_camera_is_read_over_tls_without_verifying_by_default(tls_camera):
    camera, _ = tls_camera
    assert camera.url().startswith("rtsps://")
    change, reader = first_change(camera.url())
    assert change.state is SourceState.UP, change.error
    assert reader.stats.frames_read >= 1


def test_an_rtsps_camera_is_verified_against_its_certificate(tls_camera):
    camera, cert = tls_camera
    change, _ = first_change(camera.url(), ca_file=cert)
    assert change.state is SourceState.UP, change.error


def test_a_certificate_that_does_not_verify_is_a_tls_error(tls_camera, tmp_path):
    camera, _ = tls_camera
    other_cert, _ = ensure_self_signed_cert(tmp_path / "other")  # not the camera's
    change, _ = first_change(camera.url("admin:s3cret@"), ca_file=other_cert)
    assert (change.state, change.reason) == (SourceState.DOWN, "tls")
    assert "TLS handshake" in (change.error or "") and str(other_cert) in (change.error or "")
    assert "s3cret" not in (change.error or "")


def test_rtsps_to_a_camera_without_tls_is_a_tls_error():
    camera = RtspCamera(free_port())  # plain RTSP
    try:
        change, _ = first_change(camera.url().replace("rtsp://", "rtsps://"))
    finally:
        camera.kill()
    assert (change.state, change.reason) == (SourceState.DOWN, "tls"), change.error
    assert "does it speak TLS on this port?" in (change.error or "")
