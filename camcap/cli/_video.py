"""`camcap caption VIDEO...`: timed captions of video files, as subtitles or JSON Lines.

Every video is probed and every output place checked before the model loads. Each video's frames
are sampled and decoded on a thread ahead of the model (camcap.sources.sampler) and captioned in
batches as large as the model allows; cues are written as they complete, to a temporary file that
is renamed into place at the end, so a failure leaves nothing half-written. Ctrl+C keeps the cues
done so far, says so, and exits 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from camcap.config import Settings
from camcap.engine.timing import monotonic
from camcap.errors import CamcapError
from camcap.models.base import Caption, Captioner, ModelInfo, Request, Task
from camcap.outputs.files import AtomicTextFile
from camcap.outputs.record import CaptionEvent, Cue, CueBuilder
from camcap.outputs.writers import SUFFIXES, CueWriter, Format, cue_writer
from camcap.sources.probe import VideoInfo, probe_video
from camcap.sources.sampler import SamplingPlan, VideoSampler

logger = logging.getLogger("camcap.cli")


@dataclass(frozen=True)
class VideoJob:
    """One video and where its captions go (None: stdout)."""

    info: VideoInfo
    output: Path | None


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


def plan_videos(args: argparse.Namespace, settings: Settings) -> tuple[list[VideoJob], Format, SamplingPlan]:
    """Probe every video and decide every output before the model loads: mistakes fail in milliseconds."""
    fmt = _format(args)
    infos = [probe_video(path) for path in args.images]
    try:
        plan = SamplingPlan(
            every=args.every if args.every is not None else 2.0,
            on_change=(settings.change_threshold or 0.2) if args.on_change else None,
        )
    except ValueError as exc:
        raise CamcapError(str(exc)) from None
    outputs = _outputs(args.output, infos, fmt)
    return [VideoJob(info, output) for info, output in zip(infos, outputs, strict=True)], fmt, plan


def caption_videos(captioner: Captioner, task: Task, jobs: list[VideoJob], fmt: Format, plan: SamplingPlan) -> int:
    """Caption each video in turn into its output; returns the exit code."""
    info = captioner.info
    for job in jobs:
        result = caption_video(captioner, info, task, job, fmt, plan)
        _summary(job, result)
        if result.interrupted:
            raise KeyboardInterrupt
    return 0


def caption_video(
    captioner: Captioner, info: ModelInfo, task: Task, job: VideoJob, fmt: Format, plan: SamplingPlan
) -> VideoResult:
    """Caption one video into `job.output` (or stdout). On Ctrl+C the cues done so far are kept."""
    if job.output is None:
        return _caption_into(sys.stdout, captioner, info, task, job, fmt, plan)
    with AtomicTextFile(job.output) as out:
        result = _caption_into(out.stream, captioner, info, task, job, fmt, plan)
        out.commit()
    return result


def _caption_into(
    out: TextIO, captioner: Captioner, info: ModelInfo, task: Task, job: VideoJob, fmt: Format, plan: SamplingPlan
) -> VideoResult:
    writer = cue_writer(fmt, out)
    writer.begin()
    builder = CueBuilder()
    result = VideoResult()
    started = monotonic()
    total = job.info.duration
    bar = tqdm(
        total=round(total, 1) if total else None,
        unit="s",
        desc=job.info.path.name,
        file=sys.stderr,
        disable=None,  # only on a terminal
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of video {postfix}",
        leave=False,
    )
    sampler = VideoSampler(job.info, plan, max_short_side=info.input_size, ahead=2 * max(1, info.max_batch))
    try:
        with sampler, bar:
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
                elapsed = monotonic() - started
                bar.update(round(result.media_s - bar.n, 1))
                bar.set_postfix_str(f"{result.media_s / max(elapsed, 1e-6):.1f}x real time", refresh=True)
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


def _summary(job: VideoJob, result: VideoResult) -> None:
    where = f" -> {job.output}" if job.output is not None else ""
    speed = result.media_s / max(result.wall_s, 1e-6)
    if result.interrupted:
        print(
            f"camcap: interrupted: kept {result.cues} cue(s) of {job.info.path}, up to {_clock(result.media_s)}"
            f"{where}.",
            file=sys.stderr,
        )
        return
    print(
        f"camcap: {job.info.path}: {result.cues} cue(s) from {result.captions} caption(s) of {_clock(result.media_s)} "
        f"of video in {result.wall_s:.1f} s ({speed:.1f}x real time){where}",
        file=sys.stderr,
    )


def _format(args: argparse.Namespace) -> Format:
    if args.format is not None:
        return args.format  # type: ignore[no-any-return]
    if args.json:
        return "jsonl"
    if args.output is not None:
        suffix = Path(args.output).suffix.lower()
        for fmt, known in SUFFIXES.items():
            if suffix == known:
                return fmt
    return "vtt"


def _outputs(output: str | None, infos: list[VideoInfo], fmt: Format) -> list[Path | None]:
    """One output per video: stdout, the file named, or a sidecar in the folder named."""
    if output is None:
        if len(infos) > 1:
            raise CamcapError(
                f"{len(infos)} videos: name a folder for their captions with -o FOLDER (one {SUFFIXES[fmt]} "
                "file per video), or caption them one at a time."
            )
        return [None]
    target = Path(output)
    if target.is_dir() or len(infos) > 1:
        if not target.is_dir():
            raise CamcapError(f"-o {output}: with several videos, -o must name an existing folder.")
        paths = [target / (info.path.stem + SUFFIXES[fmt]) for info in infos]
        if len(set(paths)) < len(paths):
            raise CamcapError(f"Two videos share a name, so their captions would overwrite each other in {output}.")
        return list(paths)
    if not target.parent.is_dir():
        raise CamcapError(f"-o {output}: the folder {target.parent} does not exist; create it first.")
    return [target]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}"
