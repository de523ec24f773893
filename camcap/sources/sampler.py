"""The frames of a video file worth captioning, decoded on their own thread ahead of the model.

Which frames: one every `every` seconds of media time (the first frame at or after each step), or,
with `on_change`, a frame whenever the picture changed since the last sampled one by the engine's
own measure (camcap.engine.change), checked every `probe_every` seconds, and at least one every
`every` seconds.

Decoding only what is needed: frames between samples are decoded (later frames depend on them)
but never converted to RGB or resized; non-reference frames well before the next sample are not
decoded at all (`skip_frame`); and when the next sample lies beyond a keyframe, the decoder seeks
to it instead of decoding its way there (files that index their keyframes: MP4, MOV, MKV with cues).

Times are the frames' presentation timestamps minus the first frame's, so a variable frame rate
gives true times; frames are turned upright as the file's display matrix says (phone videos).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import av
import av.error
from PIL import Image

from camcap.engine.change import FrameSignature, difference, signature
from camcap.engine.timing import monotonic
from camcap.sources.convert import frame_to_image
from camcap.sources.errors import VideoError
from camcap.sources.probe import VideoInfo, describe_decode_error, open_container

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampledFrame:
    """A frame chosen for captioning: its media time (seconds from the first frame) and pixels,
    upright and sized for the model."""

    t: float
    image: Image.Image


@dataclass(frozen=True)
class SamplingPlan:
    """When to sample. `on_change`: the change threshold in percent of the picture (None: off)."""

    every: float = 2.0
    on_change: float | None = None
    probe_every: float = 0.5

    def __post_init__(self) -> None:
        if self.every <= 0:
            raise ValueError(f"--every must be a positive number of seconds, got {self.every}.")
        if self.on_change is not None and not 0 < self.on_change <= 100:
            raise ValueError(
                f"--on-change needs a --change-threshold above 0 (a percentage of the picture), got {self.on_change}."
            )

    @property
    def step(self) -> float:
        """Media seconds between the frames looked at."""
        return min(self.every, self.probe_every) if self.on_change is not None else self.every


class _Choice:
    """Decides, frame by frame, which frames are sampled. Pure logic, on the decode thread."""

    def __init__(self, plan: SamplingPlan) -> None:
        self.plan = plan
        self.next_look = 0.0  # media time of the next frame worth looking at
        self.last_t: float | None = None
        self.last_signature: FrameSignature | None = None

    def wants_look(self, t: float) -> bool:
        return t >= self.next_look - 1e-6

    def looked(self, t: float) -> None:
        step = self.plan.step
        while self.next_look <= t + 1e-6:
            self.next_look += step

    def take(self, t: float, frame_signature: FrameSignature | None) -> bool:
        """Whether the frame looked at is sampled (with on_change, compared with the last one sampled)."""
        plan = self.plan
        take = (
            plan.on_change is None
            or self.last_t is None
            or self.last_signature is None
            or frame_signature is None
            or t - self.last_t >= plan.every - 1e-6
            or difference(frame_signature, self.last_signature) >= plan.on_change
        )
        if take:
            self.last_t, self.last_signature = t, frame_signature
        return take


class VideoSampler:
    """Iterate to get the sampled frames of one video; decoding runs on a thread, `ahead` frames
    in front of the model. Close it (or use it as a context manager) to stop the thread early."""

    def __init__(self, info: VideoInfo, plan: SamplingPlan, *, max_short_side: int, ahead: int = 4) -> None:
        self.info = info
        self.plan = plan
        self.max_short_side = max_short_side
        # Where the last cue ends: the end of the last frame decoded, and once the whole file is
        # decoded, the end of the video as its container announces it.
        self.end_t = 0.0
        self.decode_seconds = 0.0  # time the thread spent decoding and converting (not waiting)
        self.frames_decoded = 0
        self.seeks = 0
        self._queue: queue.Queue[SampledFrame | BaseException | None] = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camcap-decode-{info.path.name}", daemon=True)
        self._started = False

    def __iter__(self) -> Iterator[SampledFrame]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def batches(self, size: int) -> Iterator[list[SampledFrame]]:
        """The sampled frames in lists of up to `size`: waits for the first of each list, then
        takes those already decoded, so the model never waits for a batch to fill."""
        frames = iter(self)
        for first in frames:
            batch = [first]
            while len(batch) < size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # the end mark, for the iterator
                    break
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)
            yield batch

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._started:
            self._thread.join(timeout=5)

    def __enter__(self) -> VideoSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the decode thread ---------------------------------------------------------------------

    def _put(self, item: SampledFrame | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            self._decode()
        except VideoError as exc:
            self._put(exc)
        except av.error.FFmpegError as exc:
            self._put(describe_decode_error(self.info.path, exc))
        except BaseException as exc:  # a bug: hand it to the caller rather than hang it
            logger.exception("Decoding %s failed", self.info.path)
            self._put(exc)
        else:
            self._put(None)

    def _decode(self) -> None:
        info = self.info
        with open_container(info.path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "AUTO"  # slice and frame threads: files need throughput
            time_base = float(stream.time_base)
            keyframes = sorted(
                entry.timestamp * time_base - info.start for entry in stream.index_entries if entry.is_keyframe
            )
            choice = _Choice(self.plan)
            position = -1.0  # media time of the last frame decoded
            while not self._stop.is_set():
                seek_to = self._decode_until_seek(container, stream, choice, keyframes, position)
                if seek_to is None:
                    break
                position = seek_to
        if choice.last_t is None:
            raise VideoError(f"{info.path}: no frame could be decoded; the file is truncated or damaged.")
        self._check_complete()

    def _decode_until_seek(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        choice: _Choice,
        keyframes: list[float],
        position: float,
    ) -> float | None:
        """Decode from the current position; return the media time to seek to, or None at the end."""
        info, time_base = self.info, float(stream.time_base)
        context = stream.codec_context
        frame_s = 1.0 / float(info.average_rate) if info.average_rate else 0.04
        started = monotonic()
        for packet in container.demux(stream):
            if self._stop.is_set():
                return None
            if packet.pts is not None:
                packet_t = packet.pts * time_base - info.start
                # Frames nobody refers to, well before the next look, need not be decoded at all.
                context.skip_frame = "NONREF" if packet_t < choice.next_look - 2 * frame_s else "DEFAULT"
            for frame in packet.decode():
                if frame.pts is None:
                    continue
                t = frame.pts * time_base - info.start
                self.frames_decoded += 1
                self.end_t = max(self.end_t, t + (float(frame.duration * time_base) if frame.duration else frame_s))
                if t <= position or not choice.wants_look(t):
                    continue
                choice.looked(t)
                image = frame_to_image(frame, self.max_short_side, self.info.rotation)
                frame_signature = signature(image) if self.plan.on_change is not None else None
                if choice.take(t, frame_signature):
                    self.decode_seconds += monotonic() - started
                    self._put(SampledFrame(t, image))
                    started = monotonic()
                    if self._stop.is_set():
                        return None
                # Jump ahead when a keyframe lies between here and the next look: decoding from it
                # gives the same frame for a fraction of the work.
                after = bisect.bisect_right(keyframes, t + 1e-6)
                if after < len(keyframes) and keyframes[after] <= choice.next_look - 1e-6:
                    self.decode_seconds += monotonic() - started
                    self.seeks += 1
                    target = int((choice.next_look + info.start) / time_base)
                    container.seek(target, stream=stream, backward=True)
                    return t
        self.decode_seconds += monotonic() - started
        return None

    def _check_complete(self) -> None:
        """A file that stops well before the length its header announces was cut short."""
        duration = self.info.duration
        if self._stop.is_set() or not duration:
            return
        if self.end_t < 0.9 * duration - 1.0 and not self.seeks:
            raise VideoError(
                f"{self.info.path}: the file is truncated: its frames end at {self.end_t:.1f} s of the "
                f"{duration:.1f} s its header announces; copy or download it again."
            )
        self.end_t = max(self.end_t, duration)
