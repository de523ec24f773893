"""Real cameras for the live-source tests, started by the tests themselves.

- `MjpegCamera`: an HTTP MJPEG camera (multipart/x-mixed-replace, as IP cameras serve it) on a
  thread of this process; `stop()` is an outage (every connection dropped, the port closed),
  and a new camera on the same port is the camera coming back.
- `HlsCamera`: a live HLS stream (playlist and segments written by FFmpeg's `hls` muxer) served
  over HTTP by this process; `stop()` is an outage, as for MJPEG.
- `RtspCamera`: GStreamer's RTSP server (tests/rtsp_server.py) in a subprocess under the system
  Python; kill it for an outage, start another on the same port to come back.
"""

from __future__ import annotations

import io
import os
import socketserver
import subprocess
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest
from PIL import Image

from tests.videos import BLUE_BAR, GREEN_CIRCLE, RED_SQUARE, scene

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


def _jpeg(index: int) -> bytes:
    look = (RED_SQUARE, GREEN_CIRCLE, BLUE_BAR)[index % 3]
    buffer = io.BytesIO()
    Image.fromarray(scene(*look, (160, 120))).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


class MjpegCamera:
    """An MJPEG camera at http://127.0.0.1:PORT/mjpeg, 10 frames a second, the scene changing each second.

    `user`/`password`: require HTTP basic auth (401 otherwise). `frames`: the pictures to send
    instead of the three scenes, each for `seconds_each` in turn; `shown` records when each
    picture started being sent: (time.time(), index into frames)."""

    def __init__(
        self,
        port: int,
        user: str | None = None,
        password: str | None = None,
        frames: list[bytes] | None = None,
        seconds_each: float = 1.0,
    ) -> None:
        self.port = port
        self.stopping = threading.Event()
        self.frames_sent = 0
        self.shown: list[tuple[float, int]] = []
        frames = frames or [_jpeg(index) for index in range(3)]
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/mjpeg":
                    self.send_error(404)
                    return
                if user is not None:
                    import base64

                    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                while not camera.stopping.is_set():
                    which = int(index // (10 * seconds_each)) % len(frames)
                    data = frames[which]
                    if not camera.shown or camera.shown[-1][1] != which:
                        camera.shown.append((time.time(), which))
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(data)).encode()
                            + b"\r\n\r\n"
                            + data
                            + b"\r\n"
                        )
                        self.wfile.flush()
                    except OSError:
                        return
                    camera.frames_sent += 1
                    index += 1
                    camera.stopping.wait(0.1)

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server: socketserver.TCPServer = Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mjpeg"

    def stop(self) -> None:
        """An outage: stop serving, drop the connections, close the port."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class RtspCamera:
    """GStreamer's RTSP server on `port`, serving a live test pattern at /cam."""

    def __init__(
        self, port: int, user: str | None = None, password: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """`tls`: (certificate, key) PEM files: RTSP over TLS, at rtsps://."""
        if not _has_rtsp_server():
            _missing()
        self.port = port
        self.scheme = "rtsps" if tls else "rtsp"
        args = [SYSTEM_PYTHON, str(RTSP_SERVER), str(port)]
        if user is not None:
            args += ["--user", user, "--password", str(password)]
        if tls is not None:
            args += ["--tls", str(tls[0]), str(tls[1])]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready" once it listens
        if line.strip() != "ready":
            error = self.process.stderr.read() if self.process.stderr else ""
            self.process.kill()
            raise RuntimeError(f"the RTSP server did not start: {error}")

    def url(self, credentials: str = "") -> str:
        return f"{self.scheme}://{credentials}127.0.0.1:{self.port}/cam"

    def kill(self) -> None:
        """An outage: the server process dies at once."""
        self.process.kill()
        self.process.wait(10)


def _has_rtsp_server() -> bool:
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True).returncode == 0


def _missing() -> None:
    message = (
        "GStreamer's RTSP server is not installed: apt-get install --no-install-recommends python3-gi "
        "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
        "gstreamer1.0-plugins-ugly gstreamer1.0-libav"
    )
    if os.environ.get("CAMCAP_REQUIRE_RTSP") == "1":  # CI installs it: a skip there would hide a failure
        pytest.fail(message)
    pytest.skip(message)


class HlsCamera:
    """A live HLS stream at http://127.0.0.1:PORT/live.m3u8, as cameras and media servers publish it.

    An encoder thread plays the part of the camera: it encodes frames at 10 a second (H.264, a
    keyframe a second) with FFmpeg's own `hls` muxer (through PyAV) into one-second segments in
    `folder`, keeping the newest four in the playlist; a `ThreadingHTTPServer` serves the folder.
    `stop()` is an outage (encoder and server stop, the port closes); a new camera on the same
    port, with a new folder, is the camera coming back.
    """

    def __init__(self, port: int, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.stopping = threading.Event()
        self.segment_written = threading.Event()
        self._container = av.open(
            str(folder / "live.m3u8"),
            "w",
            format="hls",
            options={"hls_time": "1", "hls_list_size": "4", "hls_flags": "delete_segments"},
        )
        stream = self._container.add_stream("libx264", rate=10)
        stream.width, stream.height = 160, 120
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.gop_size = 10
        self._stream = stream
        self._encoder = threading.Thread(target=self._encode, daemon=True)
        self._encoder.start()

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server: socketserver.TCPServer = Server(("127.0.0.1", port), partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._folder = folder
        # A player asks for the playlist at once: wait until the first segment is listed in it.
        if not self.segment_written.wait(30):
            raise RuntimeError("the HLS encoder wrote no segment within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.m3u8"

    def _encode(self) -> None:
        pictures = [scene(*look, (160, 120)) for look in (RED_SQUARE, GREEN_CIRCLE, BLUE_BAR)]
        started = time.monotonic()
        index = 0
        while not self.stopping.is_set():
            frame = av.VideoFrame.from_ndarray(pictures[(index // 10) % 3], format="rgb24")
            frame.pts = index
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            index += 1
            if index > 10 and ".ts" in (self._folder / "live.m3u8").read_text():
                self.segment_written.set()
            # The camera's clock: a frame every 0.1 s of real time.
            self.stopping.wait(max(0.0, started + index / 10 - time.monotonic()))
        self._container.close()

    def stop(self) -> None:
        """An outage: stop encoding and serving, drop the connections, close the port."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self._encoder.join(5)
