"""Video files: how fast `camcap caption VIDEO --every 1` runs, and decoding's share of it.

A 640x480, 30 fps H.264 clip of the moving synthetic scene (3 x `seconds` long, a keyframe every
2 s) is captioned a frame a second, exactly as the CLI does it (camcap.sources.captions): decoding
on its own thread ahead of the model, batches as large as the model allows. Captions per second,
x real time (media seconds per wall second), and the decode thread's busy time over the model's
time (goal: under 5 %).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from camcap.bench._context import BenchContext
from camcap.bench._videos import write_clip
from camcap.bench.report import Goal, ScenarioResult, Table
from camcap.sources.captions import caption_video_to
from camcap.sources.probe import probe_video
from camcap.sources.sampler import SamplingPlan

EVERY_S = 1.0
DECODE_SHARE_GOAL = 5.0  # percent of model time


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    seconds = max(3.0, 3 * o.seconds)
    context.progress(f"  video_file: a {seconds:g} s 640x480 30 fps clip, a caption every {EVERY_S:g} s")
    with tempfile.TemporaryDirectory(prefix="camcap-bench-") as folder:
        clip = write_clip(Path(folder) / "clip.mp4", seconds=seconds, seed=o.seed)
        info = probe_video(clip)
        result = caption_video_to(io.StringIO(), context.captioner, context.task, info, "jsonl", SamplingPlan(EVERY_S))
    captions_per_s = result.captions / result.wall_s
    speed = result.media_s / result.wall_s
    share = 100.0 * result.decode_s / result.model_s if result.model_s else 0.0
    table = Table(
        ["video s", "captions", "wall s", "captions/s", "x real time", "decode s", "model s", "decode % of model"]
    )
    table.rows.append(
        [
            round(result.media_s, 1),
            result.captions,
            round(result.wall_s, 2),
            round(captions_per_s, 2),
            round(speed, 2),
            round(result.decode_s, 3),
            round(result.model_s, 2),
            round(share, 2),
        ]
    )
    data = {
        "video_s": round(result.media_s, 2),
        "captions": result.captions,
        "cues": result.cues,
        "wall_s": round(result.wall_s, 3),
        "captions_per_s": round(captions_per_s, 3),
        "x_real_time": round(speed, 3),
        "decode_s": round(result.decode_s, 4),
        "model_s": round(result.model_s, 3),
        "decode_percent_of_model": round(share, 3),
        "max_batch": context.info.max_batch,
    }
    goals = [
        Goal(
            f"decoding under {DECODE_SHARE_GOAL:g} % of model time",
            f"{share:.2f} % ({result.decode_s:.3f} s decoding for {result.model_s:.2f} s of model)",
            share < DECODE_SHARE_GOAL,
        )
    ]
    notes = [
        "Decode s: the decode thread's busy time (demux, decode, seek, converting the sampled frames to the "
        "model's size), measured on that thread; it overlaps the model's time, so wall time is mostly the model's.",
    ]
    return ScenarioResult("video_file", f"Video file, a caption every {EVERY_S:g} s", table, data, goals, notes)
