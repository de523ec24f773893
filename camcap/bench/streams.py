"""Streams: 1, 2, 4, 8 cameras sharing one model, with and without batching.

Every stream behaves like a page in live mode: it sends a frame (encoded beforehand, as eight
cameras are eight browsers), waits for its caption, and sends the next. After one warm-up
caption on every stream (all together, so the streams start in step), each stream takes
`captions_per_stream` captions. Throughput = all measured captions / (last caption - first
measured send); latency = send -> caption, per frame. The same runs happen on a server with
max_batch 1 (streams take turns) and with the model's max batch (streams with a frame waiting
are captioned together), once per batching window: with a window, an idle model waits up to that
long for other streams' frames before starting a batch (camcap.engine.batching). For each stream
count, every setting runs in turn, side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from camcap.bench._client import StreamClient, wall_ms
from camcap.bench._context import BenchContext
from camcap.bench._stats import median, p95, ratio, summary
from camcap.bench.report import Goal, ScenarioResult, Table


@dataclass
class _Streams:
    """One run: `count` streams on a server with `batch`."""

    batch: int
    window: float  # batch_window_ms
    count: int
    latencies: list[list[float]] = field(default_factory=list)  # ms, per stream
    windows: list[tuple[float, float]] = field(default_factory=list)  # (first send, last caption) per stream

    @property
    def captions(self) -> int:
        return sum(len(stream) for stream in self.latencies)

    @property
    def total_rate(self) -> float:
        start = min(first for first, _ in self.windows)
        end = max(last for _, last in self.windows)
        return self.captions / (end - start)

    def stream_rates(self) -> list[float]:
        return [len(lat) / (last - first) for lat, (first, last) in zip(self.latencies, self.windows, strict=True)]

    def all_latencies(self) -> list[float]:
        return [value for stream in self.latencies for value in stream]


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    # Streams taking turns (max batch 1), then batching with each window.
    configs = [(1, 0.0)]
    if context.info.max_batch > 1:
        configs += [(context.info.max_batch, window) for window in o.batch_windows]
    context.progress(
        f"  streams: {', '.join(map(str, o.streams))} streams x {len(configs)} server settings, "
        f"{o.captions_per_stream} captions per stream"
    )
    runs: list[_Streams] = []
    # Every server at once (they share the model and take turns using it), so that each stream
    # count runs under every setting side by side, in alternating order: the machine's drift over
    # minutes then falls on all settings alike instead of on whichever ran last.
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(context.server(max_batch=batch, batch_window_ms=window)) for batch, window in configs
        ]
        for index, count in enumerate(o.streams):
            order = list(zip(configs, servers, strict=True))
            for (batch, window), server in order if index % 2 == 0 else reversed(order):
                context.progress(f"    {count} stream(s), max batch {batch}, window {window:g} ms")
                runs.append(asyncio.run(_run(context, server.url("/v1/stream"), batch, window, count)))
    runs.sort(key=lambda run: (configs.index((run.batch, run.window)), run.count))
    return _result(context, runs)


async def _run(context: BenchContext, url: str, batch: int, window: float, count: int) -> _Streams:
    result = _Streams(batch, window, count)
    clients = [await StreamClient.open(url) for _ in range(count)]
    try:
        # A warm-up caption on every stream first, all together, so the measured phase starts
        # with every stream in step rather than with some still waiting for their first turn.
        await asyncio.gather(*(_caption(context, client, number, 0) for number, client in enumerate(clients)))
        measured = await asyncio.gather(*(_stream(context, client, number) for number, client in enumerate(clients)))
    finally:
        for client in clients:
            await client.close()
    for latencies, span in measured:
        result.latencies.append(latencies)
        result.windows.append(span)
    return result


async def _stream(context: BenchContext, client: StreamClient, number: int) -> tuple[list[float], tuple[float, float]]:
    """One live-mode stream: send, wait for the caption, repeat. Returns latencies and its window."""
    first = time.perf_counter()
    latencies: list[float] = []
    last = first
    for seq in range(1, 1 + context.options.captions_per_stream):
        start = time.perf_counter()
        last = await _caption(context, client, number, seq)
        latencies.append((last - start) * 1000)
    return latencies, (first, last)


async def _caption(context: BenchContext, client: StreamClient, number: int, seq: int) -> float:
    """Send frame `seq` of stream `number` and wait for its caption; returns when it arrived."""
    # Encoded beforehand: eight cameras are eight browsers, not one Python loop encoding for all
    # of them while a fast model waits. Streams see different pictures.
    jpeg = context.camera_jpegs[(number * 7 + seq) % len(context.camera_jpegs)]
    await client.send(seq, jpeg, captured_at=wall_ms())
    reply = await client.reply(seq)
    if not reply.captioned or reply.done is None:
        raise RuntimeError(f"Frame {seq} was not captioned: {reply.kind} {reply.event}")
    return reply.done


def _result(context: BenchContext, runs: list[_Streams]) -> ScenarioResult:
    table = Table(
        [
            "max batch",
            "window ms",
            "streams",
            "captions/s total",
            "x 1 stream",
            "captions/s per stream (median)",
            "latency median ms",
            "latency p95 ms",
        ]
    )
    single = {(run.batch, run.window): run.total_rate for run in runs if run.count == 1}
    data: list[dict[str, object]] = []
    for run in runs:
        speedup = ratio(run.total_rate, single.get((run.batch, run.window)))
        per_stream = median(run.stream_rates())
        latencies = run.all_latencies()
        total = round(run.total_rate, 3)
        table.rows.append(
            [run.batch, run.window, run.count, total, speedup, round(per_stream, 3), median(latencies), p95(latencies)]
        )
        data.append(
            {
                "max_batch": run.batch,
                "batch_window_ms": run.window,
                "streams": run.count,
                "captions": run.captions,
                "captions_per_s_total": round(run.total_rate, 4),
                "speedup_vs_1_stream": speedup,
                "captions_per_s_per_stream": [round(rate, 4) for rate in run.stream_rates()],
                "latency_ms": summary(latencies),
                "latency_ms_per_stream": [summary(stream) for stream in run.latencies],
            }
        )
    return ScenarioResult(
        "streams",
        "Streams: concurrent cameras on one model",
        table,
        {"runs": data},
        _goals(context, runs, single),
        [
            f"Each stream in live mode (next frame when its caption is final), {context.options.captions_per_stream} "
            "measured captions per stream after one warm-up; all clients share this process with the server.",
        ],
    )


def _goals(context: BenchContext, runs: list[_Streams], single: dict[tuple[int, float], float]) -> list[Goal]:
    batch = context.info.max_batch
    fours = [run for run in runs if run.count == 4 and run.batch == batch and batch > 1]
    if not fours:
        return []
    best = max(fours, key=lambda run: run.total_rate)
    speedup = ratio(best.total_rate, single.get((best.batch, best.window))) or 0.0
    on_gpu = context.info.device.startswith("cuda")
    measured = (
        f"4 streams give {speedup:.2f} x one stream's captions/s with max batch {batch} and a "
        f"{best.window:g} ms window, on {context.info.device}"
    )
    if not on_gpu:
        measured += " (the goal is for a GPU, where a batch fills compute one frame leaves idle: not judged here)"
    goal = "with 4 streams on a GPU, total captions/s >= 2 x one stream's, with batching"
    return [Goal(goal, measured, speedup >= 2 if on_gpu else None)]
