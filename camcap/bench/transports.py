"""Transports: the same frames over camcap's binary WebSocket, base64 JSON text, and multipart POST.

Each frame goes through every transport in turn (the order rotates each round), so all of them
see the same pictures under the same load. Round trip = client JPEG encode (plus base64 and JSON
where the transport needs them) -> final caption at the client. Overhead = round trip - the
server's `inference_ms` for that same frame: what the transport and camcap add to the model.

The base64 transport is not part of camcap: the bench mounts it on the app it builds
(`_base64_route.py`), and it hands frames to camcap's own endpoint, so only the encoding differs.
A binary WebSocket *with* permessage-deflate is shown too, from a second server that accepts it
as uvicorn does by default: browsers offer deflate, which spends CPU compressing JPEG bytes that
do not compress, so `camcap serve` refuses it. That row measures what refusing it saves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image

from camcap.bench._client import CaptionPoster, StreamClient, wall_ms
from camcap.bench._context import BenchContext
from camcap.bench._server import BASE64_PATH, BenchServer
from camcap.bench._stats import median, p95, ratio, summary
from camcap.bench.report import Goal, ScenarioResult, Table

BINARY = "binary WebSocket (camcap)"
BINARY_DEFLATE = "binary WebSocket, permessage-deflate"
BASE64 = "base64 JSON WebSocket"
MULTIPART = "multipart POST /v1/caption"
TRANSPORTS = (BINARY, BINARY_DEFLATE, BASE64, MULTIPART)


@dataclass
class _Sample:
    round_trip: float  # ms
    inference: float  # ms, the server's, for this frame
    size: int  # bytes on the wire (before any deflate)


Send = Callable[[int, Image.Image], Awaitable[_Sample]]


def run(context: BenchContext) -> ScenarioResult:
    reps = context.options.transport_reps
    context.progress(f"  transports: {reps} frames x {len(TRANSPORTS)} transports, interleaved")
    # No batching window: the clients take turns by construction (one frame in flight across all
    # of them), so a window would only wait for a stream that cannot send until this one is done.
    with context.server(batch_window_ms=0) as server, context.server(deflate=True, batch_window_ms=0) as deflating:
        samples = asyncio.run(_measure(context, server, deflating))
    return _result(samples)


async def _measure(context: BenchContext, server: BenchServer, deflating: BenchServer) -> dict[str, list[_Sample]]:
    options = context.options
    # Every WebSocket client offers deflate, as browsers do; only `deflating` accepts it.
    binary = await StreamClient.open(server.url("/v1/stream"))
    deflated = await StreamClient.open(deflating.url("/v1/stream"))
    base64 = await StreamClient.open(server.url(BASE64_PATH), base64=True)
    poster = CaptionPoster(server.port)
    senders: dict[str, Send] = {
        BINARY: lambda seq, picture: _over_stream(context, binary, seq, picture),
        BINARY_DEFLATE: lambda seq, picture: _over_stream(context, deflated, seq, picture),
        BASE64: lambda seq, picture: _over_stream(context, base64, seq, picture),
        MULTIPART: lambda seq, picture: asyncio.to_thread(_over_http, context, poster, picture),
    }
    samples: dict[str, list[_Sample]] = {name: [] for name in TRANSPORTS}
    try:
        for index in range(options.warmup + options.transport_reps):
            picture = context.picture(index)
            shift = index % len(TRANSPORTS)
            for name in TRANSPORTS[shift:] + TRANSPORTS[:shift]:
                sample = await senders[name](index, picture)
                if index >= options.warmup:
                    samples[name].append(sample)
    finally:
        poster.close()
        for client in (binary, deflated, base64):
            await client.close()
    return samples


async def _over_stream(context: BenchContext, client: StreamClient, seq: int, picture: Image.Image) -> _Sample:
    start = time.perf_counter()
    captured = wall_ms()
    reply = await client.send(seq, context.encode(picture), captured_at=captured)
    reply = await client.reply(seq)
    if not reply.captioned or reply.done is None:
        raise RuntimeError(f"Frame {seq} was not captioned: {reply.kind} {reply.event}")
    return _Sample((reply.done - start) * 1000, reply.server_ms("inference_ms") or 0.0, reply.size)


def _over_http(context: BenchContext, poster: CaptionPoster, picture: Image.Image) -> _Sample:
    # On a worker thread, timed here, so the hop to the thread is not counted against HTTP.
    poster.keep_alive()
    start = time.perf_counter()
    answer, done, size = poster.post(context.encode(picture))
    return _Sample((done - start) * 1000, float(answer["timings"]["inference_ms"]), size)


def _result(samples: dict[str, list[_Sample]]) -> ScenarioResult:
    table = Table(["transport", "kB sent", "round trip median ms", "overhead median ms", "overhead p95 ms", "x binary"])
    data: dict[str, object] = {}
    overheads = {name: [s.round_trip - s.inference for s in values] for name, values in samples.items()}
    binary = median(overheads[BINARY])
    for name, values in samples.items():
        overhead = overheads[name]
        size = median([s.size for s in values])
        round_trip, middle = median([s.round_trip for s in values]), median(overhead)
        table.rows.append([name, round(size / 1024, 1), round_trip, middle, p95(overhead), ratio(middle, binary)])
        data[name] = {
            "bytes": size,
            "round_trip": summary([s.round_trip for s in values]),
            "inference": summary([s.inference for s in values]),
            "overhead": summary(overhead),
            "overhead_vs_binary": ratio(median(overhead), binary),
        }
    others = {name: median(overheads[name]) for name in (BASE64, MULTIPART)}
    goal = Goal(
        "binary WebSocket overhead lower than base64 JSON's and multipart's",
        f"median overhead: binary {binary:.1f} ms, base64 JSON {others[BASE64]:.1f} ms, "
        f"multipart {others[MULTIPART]:.1f} ms",
        all(binary < other for other in others.values()),
    )
    notes = [
        f"{len(samples[BINARY])} frames per transport, order rotated every frame; overhead = round trip - "
        "the server's inference_ms for the same frame.",
        "WebSocket clients offer permessage-deflate, as browsers do; camcap's server declines it, the "
        "'permessage-deflate' row's server (uvicorn's default) accepts it. The multipart client keeps "
        "its connection alive, as fetch does.",
    ]
    return ScenarioResult(
        "transports", "Transports: binary WebSocket vs base64 JSON vs multipart", table, data, [goal], notes
    )
