"""Scale out: many cameras through camcap's `openai:` backend to 1, 2 and 4 engine replicas.

What runs is camcap's real path from a stream's slot on: the scheduler (one waiting slot per
camera, `--max-inflight` workers) and the `openai:` backend (JPEG, data: URL, streamed chat
completion over HTTP). What it talks to is simulated: each replica is a stand-in engine
(camcap/scale/stand_in.py, a subprocess) whose steps take `fixed + per_item * batch` ms up to a
max batch, one token per step, continuous batching; a router subprocess (camcap/scale/router.py,
least loaded) spreads requests over the replicas. Cameras run at `SIM_FPS` in live mode (the
newest frame waits in the slot; older ones are skipped), change gating off.

Measured per run, over a window that starts once every camera has had a caption: captions/s,
each camera's captions and frame age (camera capture -> caption final). Each run lasts long
enough for about `scale_captions` captions per camera.

The headline runs give `--max-inflight` = replicas x the engine's max batch: a front end keeps
only that many requests in flight, so it must grow with the deployment behind it. Two more runs
at the largest replica count (4 or more) show why: the default `--max-inflight` (8), and
round-robin routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from PIL import Image

from camcap.bench._context import BenchContext
from camcap.bench._stats import median, p95, ratio
from camcap.bench.report import Goal, ScenarioResult, Table
from camcap.engine.events import Frame, FrameCaption, FrameError, StreamEvent
from camcap.engine.options import StreamOptions
from camcap.engine.scheduler import Scheduler
from camcap.engine.timing import monotonic
from camcap.models.base import Task
from camcap.models.openai_api import DEFAULT_MAX_INFLIGHT
from camcap.models.registry import create_captioner
from camcap.scale._processes import free_port, started
from camcap.scale.stand_in import MODEL_ID, Curve

SIM_FPS = 15.0  # each camera's frame rate: a frame waits at most 1/15 s in its slot for a free worker
FRAME_SIZE = (160, 120)  # small: the engine never looks, and the front end's JPEG work stays small
WARMUP_TIMEOUT_S = 120.0  # every camera's first caption, on a loaded machine
MIN_WINDOW_S = 2.0  # the shortest measured window


@dataclass
class _Run:
    replicas: int
    max_inflight: int
    policy: str
    seconds: float = 0.0
    ages: list[list[float]] = field(default_factory=list)  # per camera, ms, captions in the window
    errors: int = 0
    per_replica: list[int] = field(default_factory=list)  # requests each replica served (router's count)

    @property
    def label(self) -> str:
        return f"{self.replicas} replica(s), max-inflight {self.max_inflight}, {self.policy}"

    @property
    def captions(self) -> int:
        return sum(len(camera) for camera in self.ages)

    @property
    def rate(self) -> float:
        return self.captions / self.seconds if self.seconds else 0.0

    @property
    def spread(self) -> float | None:
        """Max / min captions per camera (inf if a camera had none)."""
        counts = [len(camera) for camera in self.ages]
        return (max(counts) / min(counts) if min(counts) else math.inf) if counts else None

    def all_ages(self) -> list[float]:
        return [age for camera in self.ages for age in camera]


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    curve = Curve(o.scale_fixed_ms, o.scale_per_item_ms, o.scale_max_batch)
    top = max(o.scale_replicas)
    plan = [(replicas, replicas * curve.max_batch, "least_loaded") for replicas in o.scale_replicas]
    if top >= 4:  # the comparisons that explain the headline (skipped by --smoke's 1 and 2 replicas)
        plan += [(top, DEFAULT_MAX_INFLIGHT, "least_loaded"), (top, top * curve.max_batch, "round_robin")]
    pictures = [context.picture(index * 5).resize(FRAME_SIZE) for index in range(o.scale_cameras)]
    runs: list[_Run] = []
    for replicas, inflight, policy in dict.fromkeys(plan):  # no run twice
        run_ = _Run(replicas, inflight, policy)
        context.progress(f"    {o.scale_cameras} cameras, {run_.label}")
        with _deployment(replicas, curve, policy) as base_url:
            asyncio.run(_drive(context, run_, base_url, curve, pictures))
            run_.per_replica = _served(base_url)
        runs.append(run_)
    return _result(context, curve, runs)


@contextlib.contextmanager
def _deployment(replicas: int, curve: Curve, policy: str) -> Iterator[str]:
    """`replicas` stand-in engines behind a router; yields the router's API root."""
    with contextlib.ExitStack() as stack:
        urls = []
        for number in range(replicas):
            port = free_port()
            args = [
                "--port",
                str(port),
                "--name",
                f"replica-{number}",
                "--fixed-ms",
                str(curve.fixed_ms),
                "--per-item-ms",
                str(curve.per_item_ms),
                "--max-batch",
                str(curve.max_batch),
            ]
            stack.enter_context(started("camcap.scale.stand_in", args, f"http://127.0.0.1:{port}/v1/models"))
            urls.append(f"http://127.0.0.1:{port}/v1")
        port = free_port()
        router_args = ["--port", str(port), "--policy", policy, *urls]
        stack.enter_context(started("camcap.scale.router", router_args, f"http://127.0.0.1:{port}/v1/models"))
        yield f"http://127.0.0.1:{port}/v1"


def _served(base_url: str) -> list[int]:
    stats = httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=10).json()
    return [int(replica["sent"]) for replica in stats["replicas"]]


def _expected_rate(context: BenchContext, curve: Curve, run_: _Run) -> float:
    """Captions/s the simulated deployment gives when the front end keeps it as busy as it can."""
    inflight = min(run_.max_inflight, context.options.scale_cameras, run_.replicas * curve.max_batch)
    batch = max(1, math.ceil(inflight / run_.replicas))
    return inflight / curve.request_s(context.options.new_tokens, batch)


async def _drive(context: BenchContext, run_: _Run, base_url: str, curve: Curve, pictures: list[Image.Image]) -> None:
    o = context.options
    settings = context.settings.model_copy(
        update={"model": f"openai:{base_url}#{MODEL_ID}", "max_inflight": run_.max_inflight}
    )
    captioner = create_captioner(settings.model, settings.model_options())
    await asyncio.to_thread(captioner.setup)
    scheduler = Scheduler(captioner, stream_options=StreamOptions(change_threshold=0.0))
    done: list[list[tuple[float, float]]] = [[] for _ in pictures]  # per camera: (final at, age ms)
    everyone_captioned = asyncio.Event()
    errors = 0

    def sink(camera: int) -> object:
        def deliver(event: StreamEvent) -> None:
            nonlocal errors
            now = monotonic()
            if isinstance(event, FrameCaption) and event.captured_at is not None:
                done[camera].append((now, (now - event.captured_at) * 1000.0))
                if all(done):
                    everyone_captioned.set()
            elif isinstance(event, FrameError):
                errors += 1

        return deliver

    scheduler.start()
    try:
        streams = [scheduler.open_stream(sink(camera)) for camera in range(len(pictures))]  # type: ignore[arg-type]
        task = Task.caption()

        async def camera(number: int) -> None:
            # Cameras start out of step, as real ones do.
            await asyncio.sleep(number / len(pictures) / SIM_FPS)
            for seq in range(1, 1 << 30):
                now = monotonic()
                streams[number].submit(Frame(seq, pictures[number], task, received_at=now, captured_at=now))
                await asyncio.sleep(1 / SIM_FPS)

        cameras = [asyncio.create_task(camera(number)) for number in range(len(pictures))]
        try:
            await asyncio.wait_for(everyone_captioned.wait(), WARMUP_TIMEOUT_S)
            start = monotonic()
            # At least MIN_WINDOW_S, so a fast (smoke) engine still gives every camera a caption or two.
            run_.seconds = max(MIN_WINDOW_S, o.scale_captions * len(pictures) / _expected_rate(context, curve, run_))
            await asyncio.sleep(run_.seconds)
            end = monotonic()
        finally:
            for task_ in cameras:
                task_.cancel()
            await asyncio.gather(*cameras, return_exceptions=True)
            for stream in streams:
                stream.close()
    finally:
        await asyncio.to_thread(scheduler.close)
        await asyncio.to_thread(captioner.close)
    run_.seconds = end - start
    run_.ages = [[age for at, age in camera if start <= at < end] for camera in done]
    run_.errors = errors


def _result(context: BenchContext, curve: Curve, runs: list[_Run]) -> ScenarioResult:
    o = context.options
    tokens = o.new_tokens
    engine_ms = curve.request_s(tokens) * 1000.0
    base = next((r for r in runs if r.replicas == min(o.scale_replicas) and r.policy == "least_loaded"), None)
    table = Table(
        [
            "replicas",
            "max-inflight",
            "router",
            "captions/s",
            "x 1 replica",
            "frame age median ms",
            "worst camera's median ms",
            "p95 ms",
            "max/min per camera",
            "per replica",
        ]
    )
    data: list[dict[str, object]] = []
    for r in runs:
        camera_medians = [median(camera) for camera in r.ages if camera]
        speedup = ratio(r.rate, base.rate) if base is not None and base.replicas == 1 else None
        spread = r.spread
        table.rows.append(
            [
                r.replicas,
                r.max_inflight,
                r.policy,
                round(r.rate, 2),
                speedup,
                median(r.all_ages()),
                max(camera_medians, default=None),
                p95(r.all_ages()),
                None if spread is None else round(spread, 2),
                "/".join(map(str, r.per_replica)),
            ]
        )
        data.append(
            {
                "replicas": r.replicas,
                "max_inflight": r.max_inflight,
                "policy": r.policy,
                "seconds": round(r.seconds, 2),
                "captions": r.captions,
                "captions_per_s": round(r.rate, 3),
                "speedup_vs_1_replica": speedup,
                "frame_age_ms_median": median(r.all_ages()),
                "frame_age_ms_p95": p95(r.all_ages()),
                "frame_age_ms_median_per_camera": [round(value, 1) for value in camera_medians],
                "captions_per_camera": [len(camera) for camera in r.ages],
                "max_over_min_captions": None if spread is None or math.isinf(spread) else round(spread, 3),
                "errors": r.errors,
                "requests_per_replica": r.per_replica,
            }
        )
    notes = [
        f"{o.scale_cameras} cameras at {SIM_FPS:g} fps, {FRAME_SIZE[0]}x{FRAME_SIZE[1]} frames, {tokens} tokens per "
        f"caption; each replica steps in {curve.fixed_ms:g} + {curve.per_item_ms:g} x batch ms, max batch "
        f"{curve.max_batch}: {engine_ms:.0f} ms per request in a full batch, {curve.request_s(tokens, 1) * 1000:.0f} "
        "ms alone.",
        "Frame age: camera capture -> caption final, so it includes the wait in the camera's slot (< 1/fps), "
        "camcap's JPEG + HTTP and the router.",
    ]
    return ScenarioResult(
        "scale_out",
        "Scale out: cameras through openai: to engine replicas behind a router",
        table,
        {"engine_ms_per_request": round(engine_ms, 1), "runs": data},
        _goals(context, runs, base, engine_ms),
        notes,
    )


def _goals(context: BenchContext, runs: list[_Run], base: _Run | None, engine_ms: float) -> list[Goal]:
    o = context.options
    headline = [r for r in runs if r.policy == "least_loaded" and r.max_inflight == r.replicas * o.scale_max_batch]
    top = max(headline, key=lambda r: r.replicas)
    goals = []
    if base is not None and base.replicas == 1 and top.replicas == 4:
        speedup = ratio(top.rate, base.rate) or 0.0
        goals.append(
            Goal(
                "4 replicas >= 3.5 x one replica's captions/s",
                f"{speedup:.2f} x ({top.rate:.2f} vs {base.rate:.2f} captions/s)",
                speedup >= 3.5,
            )
        )
    if top.replicas * o.scale_max_batch >= o.scale_cameras:
        worst = max((median(camera) for camera in top.ages if camera), default=math.inf)
        goals.append(
            Goal(
                f"frame age <= 1.2 x the engine's time per request ({engine_ms:.0f} ms), replicas holding all",
                f"{top.replicas} replicas: worst camera's median {worst:.0f} ms = {worst / engine_ms:.2f} x; "
                f"all captions' median {median(top.all_ages()):.0f} ms",
                worst <= 1.2 * engine_ms,
            )
        )
    spreads = [(r.spread or math.inf) for r in headline]
    goals.append(
        Goal(
            "no camera starved: max/min captions per camera <= 1.2",
            ", ".join(f"{r.replicas} replica(s) {s:.2f}" for r, s in zip(headline, spreads, strict=True)),
            all(s <= 1.2 for s in spreads),
        )
    )
    return goals
