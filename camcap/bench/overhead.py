"""Overhead: the model alone vs the full path through the server, same frames, interleaved.

For each frame, two timings, in alternating order so that drift (another process, thermal
state) hits both sides alike:

- model: `captioner.generate` called directly on the pixels the server would produce;
- full path: client JPEG encode -> binary WebSocket -> server decode -> scheduler -> model ->
  caption event back at the client.

Two measures of camcap's own cost come out of that:

- paired: full path - model, per pair. The definition, but on a shared CPU the model's own
  run-to-run spread (tens of ms) is in it;
- in-path: full path - the server's `inference_ms` for that very frame. Everything around the
  model, free of the model's spread; misses only a slowdown of the model itself while the server
  works beside it, which is shown as its own row (inference_ms - model, paired).
"""

from __future__ import annotations

import asyncio
import time

from PIL import Image

from camcap.bench._client import StreamClient, wall_ms
from camcap.bench._context import BenchContext
from camcap.bench._stats import median, p95, ratio, summary
from camcap.bench.report import Goal, ScenarioResult, Table

STREAM = "/v1/stream"


def run(context: BenchContext) -> ScenarioResult:
    options = context.options
    context.progress(f"  overhead: {options.pairs} interleaved pairs (model alone, full path)")
    with context.server() as server:
        samples = asyncio.run(_measure(context, server.url(STREAM)))
    return _result(samples)


async def _measure(context: BenchContext, url: str) -> dict[str, list[float]]:
    options = context.options
    samples: dict[str, list[float]] = {
        name: []
        for name in (
            "model", "first_token", "per_token", "full", "encode", "decode", "queue", "inference", "server_total",
            "bytes",
        )
    }  # fmt: skip
    client = await StreamClient.open(url)
    try:
        for index in range(options.warmup + options.pairs):
            picture = context.picture(index)
            image = context.decoded(context.encode(picture))
            # Alternate which side goes first.
            if index % 2 == 0:
                direct = await _direct(context, image)
                path = await _full(context, client, index, picture)
            else:
                path = await _full(context, client, index, picture)
                direct = await _direct(context, image)
            if index < options.warmup:
                continue  # the first frames on a new connection pay for its set-up
            for name, value in direct.items():
                samples[name].append(value)
            for name, value in path.items():
                samples[name].append(value)
    finally:
        await client.close()
    return samples


async def _direct(context: BenchContext, image: Image.Image) -> dict[str, float]:
    """The model alone: its wall time, and from the backend's own timings the time to the first
    token (preprocessing, the image encoder and the prompt's prefill) and each token after it."""
    elapsed, caption = await asyncio.to_thread(context.direct, image)
    timings = caption.timings
    steps = max(1, timings.tokens - 1)
    return {
        "model": elapsed,
        "first_token": timings.preprocess_ms + (timings.encode_ms or 0.0) + timings.first_token_ms,
        "per_token": timings.decode_ms / steps,
    }


async def _full(context: BenchContext, client: StreamClient, seq: int, picture: Image.Image) -> dict[str, float]:
    start = time.perf_counter()
    captured = wall_ms()
    jpeg = context.encode(picture)
    encoded = time.perf_counter()
    await client.send(seq, jpeg, captured_at=captured)
    reply = await client.reply(seq)
    if not reply.captioned or reply.done is None:
        raise RuntimeError(f"Frame {seq} was not captioned: {reply.kind} {reply.event}")
    return {
        "full": (reply.done - start) * 1000,
        "encode": (encoded - start) * 1000,
        "decode": reply.server_ms("image_decode_ms") or 0.0,
        "queue": reply.server_ms("queue_ms") or 0.0,
        "inference": reply.server_ms("inference_ms") or 0.0,
        "server_total": reply.server_ms("total_ms") or 0.0,
        "bytes": float(len(jpeg)),
    }


def _result(s: dict[str, list[float]]) -> ScenarioResult:
    pairs = list(zip(s["model"], s["full"], s["inference"], s["server_total"], s["encode"], strict=True))
    paired = [full - model for model, full, *_ in pairs]
    in_path = [full - inference for _, full, inference, *_ in pairs]
    slowdown = [inference - model for model, _, inference, *_ in pairs]
    # Between the client handing bytes to the socket and getting the caption back, minus what the
    # server timed itself: loopback transfer, event serialisation, the client's parsing.
    transfer = [full - total - encode for _, full, _, total, encode in pairs]
    # What the server spent outside the model, the decode and the queue: hand-offs, the scheduler.
    server_rest = [
        total - inference - decode - queue
        for total, inference, decode, queue in zip(
            s["server_total"], s["inference"], s["decode"], s["queue"], strict=True
        )
    ]
    model_median = median(s["model"])
    rows = [
        ("model alone (generate, direct)", s["model"]),
        ("  of which to the first token (preprocess + prefill)", s["first_token"]),
        ("  each token after the first", s["per_token"]),
        ("full path (encode -> caption event)", s["full"]),
        ("overhead, paired (full - model)", paired),
        ("overhead, in path (full - server inference)", in_path),
        ("  client JPEG encode", s["encode"]),
        ("  server decode + resize", s["decode"]),
        ("  server queue wait", s["queue"]),
        ("  server rest (hand-offs, scheduler, event)", server_rest),
        ("  loopback transfer + events + client", transfer),
        ("model slowdown inside the server (inference - model)", slowdown),
    ]
    table = Table(["", "median ms", "p95 ms", "% of model (median)"])
    for label, values in rows:
        table.rows.append([label, median(values), p95(values), _percent(median(values), model_median)])
    paired_median, in_path_median = median(paired), median(in_path)
    noise = p95(s["model"]) - model_median
    goals = [
        Goal(
            "camcap's overhead <= 5 % of model time",
            f"paired median {paired_median:.1f} ms = {_percent(paired_median, model_median):.2f} %; "
            f"in path {in_path_median:.1f} ms = {_percent(in_path_median, model_median):.2f} %",
            paired_median <= 0.05 * model_median and in_path_median <= 0.05 * model_median,
        ),
        Goal(
            "camcap's overhead <= 10 ms median on localhost",
            f"in path {in_path_median:.1f} ms (paired {paired_median:.1f} ms, where the model's own spread, "
            f"p95 - median, is {noise:.0f} ms)",
            in_path_median <= 10.0,
        ),
    ]
    data: dict[str, object] = {name: summary(values) for name, values in s.items()}
    data.update(
        overhead_paired=summary(paired),
        overhead_in_path=summary(in_path),
        model_slowdown=summary(slowdown),
        transfer=summary(transfer),
        server_rest=summary(server_rest),
        overhead_paired_fraction=ratio(paired_median, model_median),
        overhead_in_path_fraction=ratio(in_path_median, model_median),
        raw=s,
    )
    notes = [
        f"{len(pairs)} pairs, interleaved (alternating which goes first); JPEG {median(s['bytes']) / 1024:.0f} kB "
        "median; client and server share this process (the client's work competes with the server's, "
        "which overstates the overhead a little).",
        "The paired figure includes the model's run-to-run spread on this machine; the in-path figure is "
        "measured around the very same model call and is the precise one.",
    ]
    return ScenarioResult("overhead", "Overhead: model alone vs the full path", table, data, goals, notes)


def _percent(value: float, model: float) -> float:
    return round(100.0 * value / model, 2) if model else 0.0
