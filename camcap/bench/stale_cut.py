"""Stale-work cut: does stopping a caption early for a much newer frame make captions fresher?

The cut can only happen when a newer frame waits while a caption is written, so the client
pushes every camera frame (30 fps) of the moving scene, on servers with `cut_stale` off and on
(`stale_after_ms` at its default). A page in live mode never has a frame waiting, so the cut
never fires there. Per setting: captions per second, captions cut short (`superseded`), the age
of each caption's frame, and the on-screen staleness.
"""

from __future__ import annotations

import asyncio

from camcap.bench._context import BenchContext
from camcap.bench._live import Camera, LiveRun, push
from camcap.bench._stats import median, p95, summary
from camcap.bench.report import ScenarioResult, Table

SUPERSEDED = "error:superseded"


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    context.progress(f"  stale_cut: cut_stale off and on, {o.seconds:g} s each, every frame pushed at {o.fps:g} fps")
    jpegs = context.footage(o.seconds)
    runs: dict[bool, LiveRun] = {}
    for cut in (False, True):
        with context.server(cut_stale=cut) as server:
            camera = Camera(o.fps, context.picture)
            runs[cut] = asyncio.run(push(context, server.url("/v1/stream"), camera, o.seconds, jpegs))
    table = Table(
        [
            "cut_stale",
            "captions/s",
            "cut short",
            "age median ms",
            "age p95 ms",
            "staleness median ms",
            "staleness p95 ms",
        ]
    )
    data: dict[str, object] = {"stale_after_ms": context.settings.stale_after_ms}
    for cut, result in runs.items():
        ages, stale = result.ages_ms(), result.staleness_ms()
        cut_short = result.kinds[SUPERSEDED]
        table.rows.append([cut, round(result.rate(), 3), cut_short, median(ages), p95(ages), median(stale), p95(stale)])
        data["on" if cut else "off"] = {
            "captions": len(result.captions),
            "captions_per_s": round(result.rate(), 4),
            "cut_short": cut_short,
            "answers": dict(result.kinds),
            "age_ms": summary(ages),
            "staleness_ms": summary(stale),
        }
    notes = [
        f"{o.seconds:g} s per setting; stale_after_ms {context.settings.stale_after_ms:g}. Ages count from the "
        "camera's capture; staleness is the displayed caption's age, sampled every 10 ms.",
    ]
    return ScenarioResult("stale_cut", "Stale-work cut: off vs on, every frame pushed", table, data, [], notes)
