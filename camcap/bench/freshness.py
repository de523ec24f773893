"""Freshness: how old is the picture behind each caption, with a 30 fps camera?

A virtual camera produces frame k at start + k / fps (the client's clock). Four designs watch it
for the same number of seconds:

- live (camcap's page): the next frame is grabbed when the previous caption is final;
- live, push every frame: the client sends all 30 fps and the server keeps only the newest
  waiting frame (the freshest slot);
- every N s: one frame every `interval_s` whatever the model does (the classic design);
- FIFO queue: every frame captioned in arrival order, by the same model, in this process (no
  network, no decode: a best case for the queue, which still falls behind without bound).

Age = caption final at the client - the frame's capture time. On-screen staleness samples, every
10 ms, the age of the caption being displayed (a caption stays up until the next one): a design
that captions rarely shows a young caption at the moment it lands and an old one until the next.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time

from camcap.bench._context import BenchContext
from camcap.bench._live import Camera, LiveRun, every, paced, push
from camcap.bench._stats import median, p95, ratio, summary
from camcap.bench.report import Goal, ScenarioResult, Table

LIVE = "live (camcap page)"
PUSH = "live, push every frame"
INTERVAL = "every {interval:g} s"
QUEUE = "FIFO queue, every frame"


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    context.progress(f"  freshness: 4 designs x {o.seconds:g} s of a {o.fps:g} fps camera")
    jpegs = context.footage(o.seconds)
    runs: dict[str, LiveRun] = {}
    with context.server() as server:
        url = server.url("/v1/stream")
        runs[LIVE] = asyncio.run(paced(context, url, Camera(o.fps, context.picture), o.seconds))
        runs[PUSH] = asyncio.run(push(context, url, Camera(o.fps, context.picture), o.seconds, jpegs))
        interval = INTERVAL.format(interval=o.interval_s)
        runs[interval] = asyncio.run(every(context, url, Camera(o.fps, context.picture), o.seconds, o.interval_s))
    runs[QUEUE] = _queue(context)
    return _result(context, runs)


def _queue(context: BenchContext) -> LiveRun:
    """An unbounded FIFO: every frame, in order, straight to the model (no server)."""
    o = context.options
    images = [context.decoded(context.encode(picture)) for picture in context.camera]
    frames: queue.SimpleQueue[int] = queue.SimpleQueue()
    camera = Camera(o.fps, context.picture)
    run = LiveRun(camera.start, sent=max(1, int(o.seconds * o.fps)))
    deadline = camera.start + o.seconds

    def produce() -> None:
        for index in range(run.sent):
            time.sleep(max(0.0, camera.at(index) - time.perf_counter()))
            frames.put(index)

    producer = threading.Thread(target=produce, name="camcap-bench-camera", daemon=True)
    producer.start()
    while time.perf_counter() < deadline:
        try:
            index = frames.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            break
        elapsed, _ = context.direct(images[index % len(images)])
        run.captions.append((camera.at(index), time.perf_counter()))
        run.model_ms.append(elapsed)
    producer.join()
    run.backlog = frames.qsize()
    run.end = time.perf_counter()
    return run


def _result(context: BenchContext, runs: dict[str, LiveRun]) -> ScenarioResult:
    o = context.options
    table = Table(
        [
            "design",
            "captions/s",
            "model ms (median)",
            "age median ms",
            "age p95 ms",
            "age / model",
            "on-screen staleness median ms",
            "staleness p95 ms",
            "frames dropped or waiting",
        ]
    )
    data: dict[str, object] = {}
    ratios: dict[str, float | None] = {}
    for name, result in runs.items():
        # Each design's own model latency, measured in the same run under the same load: the
        # server's inference_ms per caption, or the queue's direct model calls.
        model_ms = result.inference_ms or result.model_ms
        model = median(model_ms)
        ages, stale, rate = result.ages_ms(), result.staleness_ms(), result.rate()
        waiting = result.backlog if name == QUEUE else result.kinds["replaced"] + result.kinds["unchanged"]
        ratios[name] = age_ratio = ratio(median(ages), model)
        table.rows.append(
            [name, round(rate, 3), model, median(ages), p95(ages), age_ratio, median(stale), p95(stale), waiting]
        )
        data[name] = {
            "captions": len(result.captions),
            "frames_sent": result.sent,
            "captions_per_s": round(rate, 4),
            "model_ms": summary(model_ms),
            "age_ms": summary(ages),
            "age_over_model": age_ratio,
            "staleness_ms": summary(stale),
            "answers": dict(result.kinds),
            "backlog": result.backlog,
        }
    live_ratio = ratios[LIVE]
    goal = Goal(
        "live-mode freshness <= 1.2 x model latency at the median",
        f"median age {live_ratio} x the model's median time in that run (push every frame: {ratios[PUSH]} x)",
        live_ratio is not None and live_ratio <= 1.2,
    )
    notes = [
        f"{o.seconds:g} s per design, camera at {o.fps:g} fps. Model ms: each design's own, in the same run "
        "(the server's inference_ms per caption; for the queue, its direct model calls).",
        "Age counts from the camera's capture of the frame (a page's picture is up to one camera frame old "
        "when grabbed). The FIFO queue runs in-process with no network or decode, a best case for it; "
        "its last column is the frames still queued when the run ended.",
    ]
    return ScenarioResult("freshness", "Freshness: age of the frame behind each caption", table, data, [goal], notes)
