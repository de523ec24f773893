"""`camcap caption VIDEO...`: timed captions of video files, as subtitles or JSON Lines.

Every video is probed and every output place checked before the model loads. Each video's frames
are sampled and decoded on a thread ahead of the model and captioned in batches as large as the
model allows (camcap.sources.captions); cues are written as they complete, to a temporary file that
is renamed into place at the end, so a failure leaves nothing half-written. Ctrl+C keeps the cues
done so far, says so, and exits 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from camcap.config import Settings
from camcap.engine.timing import monotonic
from camcap.errors import CamcapError
from camcap.models.base import Captioner, Task
from camcap.outputs.files import AtomicTextFile
from camcap.outputs.writers import SUFFIXES, Format
from camcap.sources.captions import VideoResult, caption_video_to
from camcap.sources.probe import VideoInfo, probe_video
from camcap.sources.sampler import SamplingPlan

logger = logging.getLogger("camcap.cli")


@dataclass(frozen=True)
class VideoJob:
    """One video and where its captions go (None: stdout)."""

    info: VideoInfo
    output: Path | None


def plan_videos(args: argparse.Namespace, settings: Settings) -> tuple[list[VideoJob], Format, SamplingPlan]:
    """Probe every video and decide every output before the model loads: mistakes fail in milliseconds."""
    fmt = _format(args)
    infos = [probe_video(path) for path in args.images]
    try:
        plan = SamplingPlan(
            every=args.every if args.every is not None else 2.0,
            on_change=settings.change_threshold if args.on_change else None,
        )
    except ValueError as exc:
        raise CamcapError(str(exc)) from None
    outputs = _outputs(args.output, infos, fmt)
    return [VideoJob(info, output) for info, output in zip(infos, outputs, strict=True)], fmt, plan


def caption_videos(captioner: Captioner, task: Task, jobs: list[VideoJob], fmt: Format, plan: SamplingPlan) -> int:
    """Caption each video in turn into its output; returns the exit code."""
    for job in jobs:
        result = caption_video(captioner, task, job, fmt, plan)
        _summary(job, result)
        if result.interrupted:
            raise KeyboardInterrupt
    return 0


def caption_video(captioner: Captioner, task: Task, job: VideoJob, fmt: Format, plan: SamplingPlan) -> VideoResult:
    """Caption one video into `job.output` (or stdout). On Ctrl+C the cues done so far are kept."""
    with _ProgressBar(job.info) as bar:
        if job.output is None:
            return caption_video_to(sys.stdout, captioner, task, job.info, fmt, plan, progress=bar.update)
        with AtomicTextFile(job.output) as out:
            result = caption_video_to(out.stream, captioner, task, job.info, fmt, plan, progress=bar.update)
            out.commit()
    return result


class _ProgressBar:
    """Media time done of total, and the speed as x real time; shown on a terminal only."""

    def __init__(self, info: VideoInfo) -> None:
        total = info.duration
        self.bar = tqdm(
            total=round(total, 1) if total else None,
            unit="s",
            desc=info.path.name,
            file=sys.stderr,
            disable=None,  # only on a terminal
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of video {postfix}",
            leave=False,
        )
        self.started = monotonic()

    def update(self, media_s: float) -> None:
        self.bar.update(round(media_s - self.bar.n, 1))
        speed = media_s / max(monotonic() - self.started, 1e-6)
        self.bar.set_postfix_str(f"{speed:.1f}x real time", refresh=True)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


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
