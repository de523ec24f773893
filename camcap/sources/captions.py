"""Caption a video file into timed cues: sampled frames (sampler.py), batched through the model,
cues (outputs/record.py) written as they complete.

The library side of `camcap caption VIDEO` and of `camcap bench`'s video scenario. Ctrl+C during a
run ends it early with the cues done so far written and `VideoResult.interrupted` set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from camcap.engine.timing import monotonic
from camcap.models.base import Caption, Captioner, Request, Task
from camcap.outputs.record import CaptionEvent, Cue, CueBuilder
from camcap.outputs.writers import CueWriter, Format, cue_writer
from camcap.sources.probe import VideoInfo
from camcap.sources.sampler import SamplingPlan, VideoSampler


@dataclass
class VideoResult:
    """What captioning one video did, for the summary line and the benchmark."""

    cues: int = 0
    captions: int = 0
    media_s: float = 0.0  # media time captioned
    wall_s: float = 0.0
    decode_s: float = 0.0  # the decode thread's busy time
    model_s: float = 0.0  # time inside the model's generate
    interrupted: bool = False


def caption_video_to(
    out: TextIO,
    captioner: Captioner,
    task: Task,
    video: VideoInfo,
    fmt: Format,
    plan: SamplingPlan,
    *,
    progress: Callable[[float], None] | None = None,
) -> VideoResult:
    """Caption `video` (probed) into `out` as `fmt`; `progress(media_s)` after each batch."""
    info = captioner.info
    writer = cue_writer(fmt, out)
    writer.begin()
    builder = CueBuilder()
    result = VideoResult()
    started = monotonic()
    sampler = VideoSampler(video, plan, max_short_side=info.input_size, ahead=2 * max(1, info.max_batch))
    try:
        with sampler:
            for batch in sampler.batches(max(1, info.max_batch)):
                model_started = monotonic()
                captions = _caption_batch(captioner, [(frame.image, task) for frame in batch])
                result.model_s += monotonic() - model_started
                for frame, caption in zip(batch, captions, strict=True):
                    event = CaptionEvent(
                        t=frame.t,
                        text=caption.text,
                        task=task.kind.value,
                        model=info.name,
                        inference_ms=caption.timings.total_ms,
                    )
                    _write(writer, builder.add(event))
                    result.captions += 1
                    result.media_s = frame.t
                if progress is not None:
                    progress(result.media_s)
            result.media_s = sampler.end_t
    except KeyboardInterrupt:
        # Keep what is done: the last cue runs to the next frame that would have been sampled.
        result.interrupted = True
        if builder.pending is not None:
            result.media_s = min(builder.pending.t + plan.every, sampler.end_t or builder.pending.t + plan.every)
    _write(writer, builder.finish(result.media_s))
    result.cues = writer.count
    result.wall_s = monotonic() - started
    result.decode_s = sampler.decode_seconds
    return result


def _caption_batch(captioner: Captioner, requests: list[Request]) -> list[Caption]:
    captions: dict[int, Caption] = {}
    for event in captioner.generate(requests):
        if isinstance(event, Caption):
            captions[event.index] = event
    return [captions[index] for index in range(len(requests))]


def _write(writer: CueWriter, cue: Cue | None) -> None:
    if cue is not None:
        writer.write(cue)
