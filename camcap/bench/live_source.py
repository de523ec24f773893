"""Live sources: how fresh their captions are, and what a reader costs.

Freshness: a 640x480, 30 fps H.264 clip played at its own rate (looping) is a live source on the
real scheduler and model for `seconds`; for each caption, the frame's age at caption time (from its
arrival, decoded, to the caption) over the model's time for it (goal <= 1.2, as for browser
streams). Reader cost: a 1080p30 H.264 clip played the same way by a reader alone, no model: the
process's CPU time over wall time while only the reader works (100 % = one core), and frames
decoded per second. Every frame is decoded (later frames depend on it) but only frames the model
takes are converted to RGB.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path

from camcap.bench._context import BenchContext
from camcap.bench._stats import median, summary
from camcap.bench._videos import write_clip
from camcap.bench.report import Goal, ScenarioResult, Table
from camcap.engine.scheduler import Scheduler
from camcap.outputs.record import CaptionEvent
from camcap.sources.live import LiveSource
from camcap.sources.reader import SourceReader
from camcap.sources.spec import parse_source

AGE_GOAL = 1.2


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    seconds = max(2.0, o.seconds)
    with tempfile.TemporaryDirectory(prefix="camcap-bench-") as folder:
        context.progress(f"  live_source: a 640x480 30 fps source captioned for {seconds:g} s")
        clip = write_clip(Path(folder) / "live.mp4", seconds=4, seed=o.seed)
        captions = asyncio.run(_captions(context, clip, seconds))
        context.progress(f"  live_source: a 1080p30 H.264 reader alone for {seconds:g} s")
        big = write_clip(Path(folder) / "1080p.mp4", seconds=2, size=(1920, 1080), seed=o.seed)
        cpu_percent, fps = _reader_cost(big, seconds)
    ratios = [c.frame_age_ms / c.inference_ms for c in captions if c.frame_age_ms and c.inference_ms]
    ages = [c.frame_age_ms for c in captions if c.frame_age_ms is not None]
    models = [c.inference_ms for c in captions]
    ratio = median(ratios) if ratios else None
    table = Table(["captions", "age median ms", "model median ms", "age / model median", "reader CPU % (1080p30)",
                   "reader frames/s"])  # fmt: skip
    table.rows.append(
        [
            len(captions),
            round(median(ages), 1) if ages else None,
            round(median(models), 1) if models else None,
            round(ratio, 3) if ratio is not None else None,
            round(cpu_percent, 1),
            round(fps, 1),
        ]
    )
    data = {
        "captions": len(captions),
        "frame_age_ms": summary(ages),
        "inference_ms": summary(models),
        "age_over_model": summary(ratios),
        "reader_1080p30": {"cpu_percent_of_one_core": round(cpu_percent, 2), "frames_per_s": round(fps, 2)},
    }
    goals = [
        Goal(
            f"frame age at caption <= {AGE_GOAL} x model time",
            "no caption" if ratio is None else f"median {ratio:.3f}",
            None if ratio is None else ratio <= AGE_GOAL,
        )
    ]
    notes = [
        "Age: from the moment the reader finished decoding the frame to its caption; model: the scheduler's "
        "inference time for it. One frame in flight per source: when its caption comes, the newest frame goes next.",
        "Reader CPU: the whole process's CPU time (the reader thread and FFmpeg's slice threads) over wall time, "
        "while nothing else in it works; 100 % is one core.",
    ]
    return ScenarioResult("live_source", "Live source: freshness and reader cost", table, data, goals, notes)


async def _captions(context: BenchContext, clip: Path, seconds: float) -> list[CaptionEvent]:
    scheduler = Scheduler(context.captioner, stream_options=context.settings.stream_options())
    scheduler.start()
    captions: list[CaptionEvent] = []
    spec = parse_source(f"clip={clip}", realtime=True, loop=True)
    source = LiveSource(spec, scheduler, context.task, on_caption=captions.append)
    running = asyncio.create_task(source.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        source.stop()
        await running
        scheduler.close()
    return captions


def _reader_cost(clip: Path, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, frames per second) of a reader playing `clip` at its own rate."""
    first = threading.Event()
    reader = SourceReader(parse_source(str(clip), realtime=True, loop=True), on_frame=first.set)
    reader.start()
    try:
        first.wait(30)  # opening and the first keyframe are not the steady state
        cpu, wall, frames = time.process_time(), time.perf_counter(), reader.stats.frames_read
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        frames = reader.stats.frames_read - frames
    finally:
        reader.stop()
    return 100.0 * cpu / wall, frames / wall
