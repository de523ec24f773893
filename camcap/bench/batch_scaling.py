"""Batch scaling: the model alone on batches of 1, 2, 4, 8 frames, the ceiling of batching.

The streams scenario measures what camcap's scheduler makes of batching with live cameras; this
one measures what batching could give at best on this device: direct `generate` calls on batches
of N different frames, no server. frames/s at batch N / frames/s at batch 1 is the most N streams
could gain if every batch were full. On a CPU a batch shares the same cores as one frame, so it
gains little; on a GPU one frame leaves most of the device idle, so it should gain a lot. Where
this ceiling is low, no batching window can raise the streams' throughput, and the streams
table's differences are noise.

Batch sizes are the stream counts the run uses (capped at the model's max batch), timed in turn,
in reversed order every other round, `captions_per_stream` rounds, after one untimed round.
"""

from __future__ import annotations

from camcap.bench._context import BenchContext
from camcap.bench._stats import median, p95, ratio, summary
from camcap.bench.report import Goal, ScenarioResult, Table


def run(context: BenchContext) -> ScenarioResult:
    o = context.options
    sizes = sorted({1} | {min(count, context.info.max_batch) for count in o.streams})
    rounds = o.captions_per_stream
    context.progress(f"  batch_scaling: batches of {', '.join(map(str, sizes))} frames, {rounds} rounds, model alone")
    # Different pictures in one batch, decoded as the server would: a batch of copies could let a
    # backend share work that real streams never share.
    images = [context.decoded(jpeg) for jpeg in context.camera_jpegs[: max(sizes)]]
    if o.warmup:
        for size in sizes:
            context.direct_batch(images[:size])
    milliseconds: dict[int, list[float]] = {size: [] for size in sizes}
    for number in range(rounds):
        for size in sizes if number % 2 == 0 else reversed(sizes):
            milliseconds[size].append(context.direct_batch(images[:size])[0])
    return _result(context, milliseconds)


def _result(context: BenchContext, milliseconds: dict[int, list[float]]) -> ScenarioResult:
    table = Table(["batch", "ms per batch (median)", "ms per batch p95", "ms per frame", "frames/s", "x batch 1"])
    data: dict[str, object] = {}
    rates = {size: size * 1000 / median(values) for size, values in milliseconds.items()}
    for size, values in milliseconds.items():
        middle = median(values)
        gain = ratio(rates[size], rates[1])
        table.rows.append([size, middle, p95(values), middle / size, round(rates[size], 3), gain])
        data[str(size)] = {"batch_ms": summary(values), "frames_per_s": round(rates[size], 4), "x_batch_1": gain}
    goals = []
    if 4 in rates:
        on_gpu = context.info.device.startswith("cuda")
        gain = ratio(rates[4], rates[1]) or 0.0
        measured = f"a batch of 4 gives {gain:.2f} x the frames/s of one frame, model alone, on {context.info.device}"
        if not on_gpu:
            measured += " (a CPU batch shares the same cores: not judged here)"
        goal = "the model alone: a batch of 4 >= 2 x one frame's frames/s (the streams goal's ceiling)"
        goals.append(Goal(goal, measured, gain >= 2 if on_gpu else None))
    notes = [
        f"{len(next(iter(milliseconds.values())))} timed batches per size, sizes in turn (order reversed every other "
        "round); every frame of a batch is a different picture; no server involved.",
    ]
    return ScenarioResult(
        "batch_scaling", "Batch scaling: the model alone, batch of N frames", table, data, goals, notes
    )
