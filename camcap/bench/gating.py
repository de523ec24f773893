"""Change gating: what skipping unchanged frames saves, and what it costs.

A scripted scene alternates still and moving parts (`seconds` / 4 each: still, moving, still,
moving); in a still part only the camera's sensor noise changes. A page in live mode watches it
on servers with different `change_threshold`s (0 turns gating off). Per threshold: frames
answered `unchanged` instead of captioned, captions spent on still parts, the share of the run
the model was busy, and how soon after the scene starts moving a caption describes the motion
(change -> caption: from the first moving frame's capture to its caption).
"""

from __future__ import annotations

import asyncio

from PIL import Image

from camcap.bench._context import BenchContext
from camcap.bench._frames import Scene
from camcap.bench._live import Camera, LiveRun, paced
from camcap.bench._stats import median, summary
from camcap.bench.report import ScenarioResult, Table

PARTS = 4  # still, moving, still, moving


class _Script:
    """Which camera frames belong to a still part, and the picture each frame shows."""

    def __init__(self, context: BenchContext) -> None:
        o = context.options
        self.scene = Scene(seed=o.seed)
        self.part_frames = max(1, round(o.seconds * o.fps / PARTS))

    def still(self, index: int) -> bool:
        return (index // self.part_frames) % 2 == 0

    def picture(self, index: int) -> Image.Image:
        # In a still part the shapes stay where the part began; moving parts go on from the clock.
        start = index - index % self.part_frames
        return self.scene.frame(index, position=start if self.still(index) else None)

    def motion_starts(self, total_frames: int) -> list[int]:
        return [start for start in range(self.part_frames, total_frames, 2 * self.part_frames)]


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    thresholds = o.change_thresholds
    context.progress(f"  gating: change_threshold {', '.join(f'{t:g}' for t in thresholds)} x {o.seconds:g} s")
    script = _Script(context)
    runs: dict[float, LiveRun] = {}
    for threshold in thresholds:
        with context.server(change_threshold=threshold) as server:
            camera = Camera(o.fps, script.picture)
            runs[threshold] = asyncio.run(paced(context, server.url("/v1/stream"), camera, o.seconds))
    return _result(context, script, runs)


def _result(context: BenchContext, script: _Script, runs: dict[float, LiveRun]) -> ScenarioResult:
    o = context.options
    table = Table(
        [
            "change_threshold %",
            "frames sent",
            "captions",
            "answered unchanged",
            "captions of still frames",
            "model busy %",
            "change -> caption median ms",
            "age median ms",
        ]
    )
    data: dict[str, object] = {}
    for threshold, result in runs.items():
        fps_frames = int(o.seconds * o.fps)
        captioned = [reply for reply in result.replies if reply.captioned]
        of_still = sum(1 for reply in captioned if script.still(_frame_index(result, reply.seq, o.fps)))
        busy = 100.0 * sum(result.inference_ms) / 1000 / (result.end - result.start)
        lags = _motion_lags(result, script, o.fps, fps_frames)
        ages = result.ages_ms()
        lag = median(lags) if lags else None
        unchanged = result.kinds["unchanged"]
        table.rows.append(
            [threshold, result.sent, len(captioned), unchanged, of_still, round(busy, 1), lag, median(ages)]
        )
        data[f"{threshold:g}"] = {
            "frames_sent": result.sent,
            "captions": len(captioned),
            "answers": dict(result.kinds),
            "captions_of_still_frames": of_still,
            "model_busy_percent": round(busy, 2),
            "change_to_caption_ms": summary(lags),
            "age_ms": summary(ages),
        }
    notes = [
        f"{o.seconds:g} s per threshold: still and moving parts of {o.seconds / PARTS:g} s each, camera at "
        f"{o.fps:g} fps, the page in live mode (an `unchanged` answer frees it to send the next frame at once; "
        "the server reads at most max_fps_per_stream frames a second).",
        "Model busy % = the server's inference time over the run's length. Change -> caption: from the capture "
        "of the first moving frame after a still part to the first caption of a frame captured since.",
    ]
    return ScenarioResult("gating", "Change gating: still and moving scenes", table, data, [], notes)


def _frame_index(result: LiveRun, seq: int, fps: float) -> int:
    """The camera frame a sent frame showed, from its capture time."""
    return round((result.captured[seq] - result.start) * fps)


def _motion_lags(result: LiveRun, script: _Script, fps: float, total_frames: int) -> list[float]:
    lags = []
    for first_moving in script.motion_starts(total_frames):
        began = result.start + first_moving / fps
        finals = [done for captured, done in result.captions if captured >= began - 1e-6]
        if finals:
            lags.append((min(finals) - began) * 1000)
    return lags
