"""Is this file a video camcap can caption? Probe it with PyAV, before any model loads.

A file is recognised by what it holds, not by its name: `classify_file` tries Pillow first (a
still image, JPEG included, is an image even though FFmpeg can read it too), then FFmpeg. Probing
decodes the first frame, so a file that opens but cannot be decoded (unknown codec, cut off
before its first frame) fails here, in milliseconds, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error
from PIL import Image

from camcap.sources.errors import VideoError

_HINT = "expected a video file (MP4, MKV, WebM, MOV, AVI, ...) or an image"


@dataclass(frozen=True)
class VideoInfo:
    """What probing learned about a video file."""

    path: Path
    duration: float | None  # seconds, from the container (None if it does not say)
    width: int  # coded size, before rotation
    height: int
    rotation: int  # counter-clockwise degrees the picture must be turned to be upright (0, 90, 180, 270)
    codec: str
    average_rate: Fraction | None  # frames per second, averaged (a variable frame rate has no exact one)
    start: float  # media time of the first frame, in seconds: cue times count from here

    @property
    def upright_size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def classify_file(path: str | Path) -> Literal["image", "video"]:
    """What a file holds: "image" if Pillow reads it; "video" if FFmpeg recognises it as a media file (even a broken
    one: probing then says what is wrong with it); "image" otherwise, so that the image checks of
    `camcap.images` name the file and what it is not."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.verify()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return "image"
    except Exception:
        pass
    else:
        return "image"
    if path.stat().st_size == 0 or _looks_like_mp4(path):
        return "video"
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            return "video" if container.streams else "image"
    except av.error.EOFError:
        return "video"  # a media container with nothing in it
    except Exception:
        return "image"


def probe_video(path: str | Path) -> VideoInfo:
    """Open `path`, find its video stream and decode its first frame.

    Raises `VideoError` naming the file: missing, not a video, no video stream, empty, truncated,
    or a codec this FFmpeg build cannot decode.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file.") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot be read ({exc.strerror}).") from None
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file.")
    if size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes); {_HINT}.")
    container = open_container(path)
    try:
        return _probe(container, path, size)
    finally:
        container.close()


def open_container(path: Path) -> av.container.InputContainer:
    """`av.open` with errors that say what the file is not."""
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except PermissionError:
        raise VideoError(f"{path}: permission denied; check the file's permissions.") from None
    except av.error.EOFError:
        raise VideoError(f"{path}: the file ends before any frame (zero length, or cut off at the start).") from None
    except av.error.InvalidDataError:
        if _looks_like_mp4(path):
            raise VideoError(
                f"{path}: the file is truncated (or still being written): it starts like an MP4/MOV file but its "
                "index (the moov box, written last) is missing; copy or download it again."
            ) from None
        raise VideoError(f"{path}: not a video or image camcap can read; {_HINT}.") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot be opened as a video ({exc}); {_HINT}.") from None


def _looks_like_mp4(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(12)[4:8] == b"ftyp"


def _probe(container: av.container.InputContainer, path: Path, size: int) -> VideoInfo:
    if not container.streams.video:
        held = ", ".join(sorted({stream.type for stream in container.streams})) or "nothing"
        raise VideoError(f"{path}: has no video stream (it holds: {held}); give a file with pictures in it.")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError(
            f"{path}: its video stream cannot be decoded: the file is truncated or damaged, or its codec is "
            "unknown to this FFmpeg build."
        )
    _check_index(stream, path, size)
    try:
        first = next(container.decode(stream), None)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: its first frame cannot be decoded ({exc}); the file is truncated or damaged.") from (
            None
        )
    if first is None:
        raise VideoError(f"{path}: has a video stream but no frames (zero length).")
    time_base = stream.time_base
    # Cue times count from the first frame shown (AVI and MPEG-TS files rarely start at 0).
    start = first.time if first.time is not None else 0.0
    duration: float | None = None
    if container.duration is not None and container.duration > 0:
        duration = container.duration / av.time_base
    elif stream.duration is not None and time_base:
        duration = float(stream.duration * time_base)
    return VideoInfo(
        path=path,
        duration=duration,
        width=first.width,
        height=first.height,
        rotation=int(first.rotation) % 360,
        codec=stream.codec_context.name,
        average_rate=stream.average_rate,
        start=start,
    )


def _check_index(stream: av.video.stream.VideoStream, path: Path, size: int) -> None:
    """MP4 and MOV files index every frame up front: a file cut short is caught here, before the
    model loads, rather than after captioning half of it."""
    entries = stream.index_entries
    if not len(entries):
        return
    end = max(entry.pos + entry.size for entry in entries)
    if end > size:
        share = 100.0 * size / end
        raise VideoError(
            f"{path}: the file is truncated: it is {size} bytes but its index points to {end} "
            f"({share:.0f} % is there); copy or download it again."
        )


def describe_decode_error(path: Path, exc: BaseException) -> VideoError:
    """A decode failure in the middle of a file, as a user error."""
    return VideoError(f"{path}: decoding failed part-way ({exc}); the file is truncated or damaged.")
