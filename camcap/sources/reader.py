"""A reader per live source: a thread that connects, decodes continuously, keeps only the newest
frame, and reconnects when the source fails, for as long as it runs.

Freshness: the reader never queues frames. It holds the newest decoded frame (not yet converted:
conversion costs more than decoding at 1080p, and only frames the model takes are converted) and
the moment it arrived; whoever wants a frame takes the newest.

Faults: FFmpeg's own open and read timeouts (PyAV's `timeout=(open, read)`) end a silent
connection; every failure becomes a `SourceError` of a distinct kind (errors.py), with the URL's
secrets redacted, and a `source_down` event; the reader then waits (`Backoff`: about 1 s doubling to
30 s, with jitter, so cameras that fail together do not reconnect in step) and tries again. The
first frame after a connect is a `source_up` event and resets the backoff.
"""

from __future__ import annotations

import enum
import errno
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import av.error

from camcap.engine.timing import monotonic
from camcap.sources.devices import device_error, device_input
from camcap.sources.errors import (
    SourceAuthError,
    SourceCodecError,
    SourceError,
    SourceNotFoundError,
    SourceRefusedError,
    SourceTimeoutError,
    SourceTLSError,
)
from camcap.sources.redact import redact_text
from camcap.sources.spec import SourceSpec

if TYPE_CHECKING:
    from camcap.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 5.0
# Packets in a row that fail to decode, with no frame between, before the stream counts as one this
# FFmpeg cannot decode (a codec profile it lacks, a mislabelled stream): a damaged stream recovers at
# its next keyframe, one or two seconds away, so this is a few seconds of a camera's packets.
UNDECODABLE_PACKETS = 100


class SourceState(str, enum.Enum):
    CONNECTING = "connecting"  # not yet up since the reader started
    UP = "up"  # frames are arriving
    DOWN = "down"  # failed; waiting to reconnect
    ENDED = "ended"  # a file played to its end (without --loop)
    STOPPED = "stopped"  # stop() was called


@dataclass(frozen=True)
class LiveFrame:
    """The newest frame of a source, decoded but not converted."""

    seq: int  # counts frames read since the reader started
    frame: av.VideoFrame
    arrived_at: float  # monotonic(), when decoding it finished: frame age counts from here
    rotation: int


@dataclass(frozen=True)
class SourceChange:
    """`source_up` or `source_down`. `error` is redacted; `retry_in_s` is when the next try starts."""

    source: str
    state: SourceState
    error: str | None = None
    reason: str | None = None  # SourceError.kind: "unauthorized", "not_found", "refused", ...
    retry_in_s: float | None = None

    @property
    def type(self) -> str:
        return "source_up" if self.state is SourceState.UP else "source_down"


class Backoff:
    """Exponential backoff with jitter: first, 2 x first, ... up to `cap` seconds, each +- `jitter`."""

    def __init__(
        self, first: float = 1.0, cap: float = 30.0, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.first, self.cap, self.jitter = first, cap, jitter
        self._rng = rng or random.Random()
        self._next = first

    def next(self) -> float:
        """The next wait, in seconds."""
        base = self._next
        self._next = min(self.cap, self._next * 2)
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.first


@dataclass(frozen=True)
class ReaderOptions:
    """How patient a reader is: FFmpeg's open and read timeouts, and the reconnect backoff."""

    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    backoff_first_s: float = 1.0
    backoff_cap_s: float = 30.0
    # rtsps:// and https:// sources: verify the certificate against this PEM file (the camera's
    # certificate or its CA). None: encrypted but not verified, FFmpeg's default, because most
    # cameras' certificates are self-signed.
    tls_ca_file: str | None = None

    def backoff(self) -> Backoff:
        return Backoff(self.backoff_first_s, self.backoff_cap_s)


def reader_options_of(settings: Settings) -> ReaderOptions:
    """The readers' options that come from settings (`source_ca_file`)."""
    ca_file = settings.source_ca_file
    return ReaderOptions(tls_ca_file=str(ca_file) if ca_file is not None else None)


@dataclass
class ReaderStats:
    """Counts since the reader started (written by the reader thread, read anywhere)."""

    frames_read: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    connects: int = 0


class SourceReader:
    """Reads one source on its own thread. `start()`, then `latest()` whenever a frame is wanted;
    `stop()` ends it. `on_frame` (no arguments) and `on_change` (a `SourceChange`) are called on
    the reader's thread: keep them quick."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        on_change: Callable[[SourceChange], None] | None = None,
        on_frame: Callable[[], None] | None = None,
        options: ReaderOptions | None = None,
    ) -> None:
        self.spec = spec
        self.stats = ReaderStats()
        self.state = SourceState.CONNECTING
        self.error: str | None = None  # the last failure, redacted
        self._on_change = on_change or (lambda change: None)
        self._on_frame = on_frame or (lambda: None)
        options = options or ReaderOptions()
        self._timeouts = (options.open_timeout_s, options.read_timeout_s)
        self._tls_ca_file = options.tls_ca_file
        self._backoff = options.backoff()
        self._latest: LiveFrame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camcap-source-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; the thread ends within FFmpeg's read timeout at worst."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def latest(self) -> LiveFrame | None:
        """The newest frame, or None before the first."""
        with self._lock:
            return self._latest

    # --- the reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ended = self._connect_and_read()
            except SourceError as exc:
                self._down(exc)
                continue
            except Exception as exc:  # a bug or an FFmpeg surprise: report it, keep the source alive
                # No traceback: its text may hold the URL, password included; the redacted message says what.
                message = redact_text(f"{type(exc).__name__}: {exc}", self.spec.url)
                logger.error("Source %s failed unexpectedly: %s", self.spec.name, message)
                self._down(SourceError(message))
                continue
            if ended:
                self._set_state(SourceState.ENDED, None)
                self._on_change(SourceChange(self.spec.name, SourceState.ENDED, "The video file ended.", "ended"))
                return
        self._set_state(SourceState.STOPPED, None)

    def _down(self, exc: SourceError) -> None:
        if self._stop.is_set():
            return
        wait = self._backoff.next()
        message = redact_text(str(exc), self.spec.url)
        # A warning when the source goes down; each failed retry after that is only news at -v.
        level = logging.INFO if self.state is SourceState.DOWN else logging.WARNING
        self._set_state(SourceState.DOWN, message)
        logger.log(level, "Source down (%s): %s (retrying in %.1f s)", exc.kind, message, wait)
        self._on_change(SourceChange(self.spec.name, SourceState.DOWN, message, exc.kind, round(wait, 2)))
        self._stop.wait(wait)
        self.stats.reconnects += 1

    def _set_state(self, state: SourceState, error: str | None) -> None:
        self.state = state
        self.error = error

    def _connect_and_read(self) -> bool:
        """Read until the source fails (raises) or a file ends (True)."""
        container = self._open()
        try:
            return self._read(container)
        finally:
            container.close()

    def _open(self) -> av.container.InputContainer:
        spec = self.spec
        options: dict[str, str] = {}
        fmt: str | None = None
        url = spec.url
        if spec.kind == "rtsp":
            options["rtsp_transport"] = "tcp"  # UDP loses packets on busy networks and is blocked by NAT
        elif spec.hls:
            # Start at the newest segment of a live playlist, not three back (FFmpeg's default):
            # freshness first. FFmpeg's HLS demuxer then reloads the playlist as it grows.
            options["live_start_index"] = "-1"
        elif spec.kind == "device":
            fmt, url = device_input(spec.url)
        if spec.tls and self._tls_ca_file:
            options.update(tls_verify="1", ca_file=self._tls_ca_file)
        try:
            container = av.open(url, mode="r", format=fmt, options=options, timeout=self._timeouts)
        except (av.error.FFmpegError, OSError) as exc:
            raise classify_error(exc, spec, self._timeouts[0], ca_file=self._tls_ca_file) from None
        except ValueError as exc:  # PyAV: this FFmpeg build has no such input format
            raise classify_error(exc, spec, self._timeouts[0]) from None
        if not container.streams.video:
            container.close()
            raise SourceCodecError(f"{spec.name}: the source sends no video stream.")
        if container.streams.video[0].codec_context is None:
            container.close()
            raise SourceCodecError(
                f"{spec.name}: its video codec cannot be decoded by this FFmpeg build; set the camera to H.264, "
                "H.265 or MJPEG."
            )
        self.stats.connects += 1
        return container

    def _read(self, container: av.container.InputContainer) -> bool:
        spec = self.spec
        stream = container.streams.video[0]
        # Slice threads only: frame threads would hold several frames back, and live is about now.
        stream.codec_context.thread_type = "SLICE"
        # A file plays at its own rate; so does a lavfi test pattern, which FFmpeg makes as fast as it can.
        paced = spec.kind == "file" or (spec.kind == "device" and device_input(spec.url)[0] == "lavfi")
        pacer = _Pacer() if paced else None
        time_base = float(stream.time_base) if stream.time_base else 0.0
        up = False
        failed_in_a_row = 0
        while not self._stop.is_set():
            try:
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        return False
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError as exc:
                        self.stats.decode_errors += 1  # a damaged packet; the next keyframe repairs the picture
                        failed_in_a_row += 1
                        if failed_in_a_row >= UNDECODABLE_PACKETS:
                            raise _undecodable(spec, stream, failed_in_a_row, exc) from None
                        continue
                    if frames:
                        failed_in_a_row = 0
                    for frame in frames:
                        if pacer is not None and frame.pts is not None and time_base:
                            pacer.wait_until(frame.pts * time_base, self._stop)
                        self._publish(frame)
                        if not up:
                            up = True
                            self._backoff.reset()
                            self._set_state(SourceState.UP, None)
                            logger.info("Source %s is up", spec.name)
                            self._on_change(SourceChange(spec.name, SourceState.UP))
            except av.error.FFmpegError as exc:
                raise classify_error(exc, spec, self._timeouts[1], reading=True) from None
            if spec.kind != "file":
                raise SourceError(f"{spec.name}: the stream ended (the camera closed the connection).")
            if not spec.loop:
                return True
            container.seek(0)
            pacer = _Pacer()
        return False

    def _publish(self, frame: av.VideoFrame) -> None:
        self.stats.frames_read += 1
        latest = LiveFrame(self.stats.frames_read, frame, monotonic(), int(frame.rotation or 0))
        with self._lock:
            self._latest = latest
        self._on_frame()


def _undecodable(spec: SourceSpec, stream: av.video.stream.VideoStream, count: int, exc: Exception) -> SourceCodecError:
    codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
    detail = redact_text(getattr(exc, "strerror", None) or str(exc), spec.url)
    return SourceCodecError(
        f"{spec.name}: its {codec} video cannot be decoded by this FFmpeg build: {count} packets in a row failed "
        f"({detail}); check the camera's video settings (H.264, H.265 and MJPEG decode everywhere)."
    )


class _Pacer:
    """Plays a file at its own rate: frame at media time t is released at start + t."""

    def __init__(self) -> None:
        self._origin: tuple[float, float] | None = None  # (monotonic, media time) of the first frame

    def wait_until(self, media_t: float, stop: threading.Event) -> None:
        now = monotonic()
        if self._origin is None:
            self._origin = (now, media_t)
            return
        due = self._origin[0] + (media_t - self._origin[1])
        if due > now:
            stop.wait(due - now)


def classify_error(
    exc: BaseException, spec: SourceSpec, timeout_s: float, *, reading: bool = False, ca_file: str | None = None
) -> SourceError:
    """An FFmpeg or OS error as the distinct, redacted `SourceError` that says what to do."""
    name, where = spec.name, spec.display_url
    detail = redact_text(str(exc), spec.url)
    error: SourceError
    if spec.kind == "device" and not reading:
        device = device_error(exc, name, spec.url)
        if device is not None:
            return device
    # FFmpeg's TLS layer reports a failed handshake (a certificate it does not accept, or a server
    # that does not speak TLS) as a bare I/O error when connecting.
    if spec.tls and not reading and isinstance(exc, OSError) and exc.errno == errno.EIO:
        checked = (
            f"its certificate was checked against {ca_file}: is that the camera's certificate or its CA?"
            if ca_file
            else "does it speak TLS on this port?"
        )
        error = SourceTLSError(
            f"{name}: the TLS handshake with {where} failed; {checked} (Without a CA file camcap connects "
            "encrypted without verifying the certificate.)"
        )
    elif isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        has_credentials = "@" in spec.url.split("://", 1)[-1].split("/", 1)[0]
        fix = (
            "check the user name and password in the URL"
            if has_credentials
            else "put a user name and password in the URL: rtsp://USER:PASSWORD@host/path"
        )
        error = SourceAuthError(f"{name}: the camera refused the credentials ({where}); {fix}.")
    elif isinstance(exc, av.error.HTTPNotFoundError):
        error = SourceNotFoundError(
            f"{name}: the camera has no stream at this path ({where}); check the path (it differs between camera "
            "makes, e.g. /stream1, /h264, /cam/realmonitor)."
        )
    elif isinstance(exc, FileNotFoundError):
        error = SourceNotFoundError(f"{name}: no such device or file ({where}); check its name (ls /dev/video*).")
    elif isinstance(exc, ConnectionRefusedError):
        error = SourceRefusedError(
            f"{name}: connection refused at {where}: nothing listens on that port; is the camera on, and is the port "
            "right?"
        )
    elif isinstance(exc, TimeoutError | av.error.ExitError):
        what = "sent no frame" if reading else "did not answer"
        error = SourceTimeoutError(f"{name}: the source {what} within {timeout_s:.0f} s ({where}).")
    elif isinstance(exc, av.error.DecoderNotFoundError | av.error.PatchWelcomeError):
        error = SourceCodecError(f"{name}: the stream's codec cannot be decoded by this FFmpeg build ({detail}).")
    elif isinstance(exc, av.error.EOFError):
        error = SourceError(f"{name}: the stream ended (the camera closed the connection).")
    else:
        error = SourceError(f"{name}: cannot read {where}: {detail}")
    return error
