"""A stand-in for one GPU replica of a vision-language engine (vLLM, SGLang), for measurements.

It speaks the part of the OpenAI API camcap's `openai:` backend uses (`GET /v1/models`, streamed
`POST /v1/chat/completions`) and spends its time the way a continuous-batching engine on a GPU
does, without computing anything:

- A *step* decodes one token for every sequence in the running batch and takes
  `fixed_ms + per_item_ms * batch` (a GPU step is mostly fixed cost: weights read once per step,
  whatever the batch; each sequence adds a little).
- At most `max_batch` sequences run at once; the others wait in arrival order and join at the
  next step boundary after one finishes (continuous batching, as in vLLM and SGLang).
- A request runs for `max_tokens` steps (prefill is counted as one of them) and streams one
  token per step.

So a request alone takes `max_tokens * (fixed_ms + per_item_ms)`, one in a full batch
`max_tokens * (fixed_ms + per_item_ms * max_batch)`, and the replica's throughput rises with the
batch until `max_batch`. `GET /stats` says how many requests it served and its batch sizes.
The image is not decoded and the words are placeholders.

    python -m camcap.scale.stand_in --port 8101 --fixed-ms 40 --per-item-ms 5 --max-batch 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL_ID = "stand-in-vlm"
WORDS = ("a", "room", "with", "a", "desk", "and", "a", "person", "near", "the", "window")


@dataclass(frozen=True)
class Curve:
    """How long a step takes: `fixed_ms + per_item_ms * batch`, batch at most `max_batch`."""

    fixed_ms: float = 40.0
    per_item_ms: float = 5.0
    max_batch: int = 8

    def step_s(self, batch: int) -> float:
        return (self.fixed_ms + self.per_item_ms * batch) / 1000.0

    def request_s(self, tokens: int, batch: int | None = None) -> float:
        """A request's time in the engine at `batch` (default: a full batch), queueing aside."""
        return tokens * self.step_s(self.max_batch if batch is None else batch)


@dataclass
class _Sequence:
    left: int  # tokens still to decode
    out: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


class Engine:
    """The batch loop: one task that runs steps while any sequence waits or runs."""

    def __init__(self, curve: Curve, name: str) -> None:
        self.curve, self.name = curve, name
        self.waiting: deque[_Sequence] = deque()
        self.running: list[_Sequence] = []
        self.served = 0
        self.batches: Counter[int] = Counter()  # steps run, by batch size
        self.busy_s = 0.0
        self._wake = asyncio.Event()

    def submit(self, tokens: int) -> _Sequence:
        sequence = _Sequence(max(1, tokens))
        self.waiting.append(sequence)
        self._wake.set()
        return sequence

    def cancel(self, sequence: _Sequence) -> None:
        """A client went away: its slot in the batch is free at the next step."""
        with contextlib.suppress(ValueError):
            self.waiting.remove(sequence)
        with contextlib.suppress(ValueError):
            self.running.remove(sequence)

    async def run(self) -> None:
        # Steps follow a clock of their own (each starts when the previous one was due to end),
        # so a late wake-up of this process shortens the next sleep instead of slowing the GPU.
        due = time.monotonic()
        while True:
            while len(self.running) < self.curve.max_batch and self.waiting:
                self.running.append(self.waiting.popleft())
            if not self.running:
                self._wake.clear()
                await self._wake.wait()
                due = time.monotonic()
                continue
            batch = len(self.running)
            step = self.curve.step_s(batch)
            due = max(due, time.monotonic() - step) + step
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.batches[batch] += 1
            self.busy_s += step
            for sequence in list(self.running):
                sequence.left -= 1
                sequence.out.put_nowait(WORDS[sequence.left % len(WORDS)])
                if sequence.left == 0:
                    sequence.out.put_nowait(None)
                    self.running.remove(sequence)
                    self.served += 1

    def stats(self) -> dict[str, object]:
        return {
            "name": self.name,
            "served": self.served,
            "running": len(self.running),
            "waiting": len(self.waiting),
            "steps_by_batch": {str(size): count for size, count in sorted(self.batches.items())},
            "busy_s": round(self.busy_s, 3),
            "curve": {
                "fixed_ms": self.curve.fixed_ms,
                "per_item_ms": self.curve.per_item_ms,
                "max_batch": self.curve.max_batch,
            },
        }


def create_app(curve: Curve, *, name: str = "replica", default_tokens: int = 10) -> Starlette:
    engine = Engine(curve, name)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": name}]})

    async def stats(request: Request) -> Response:
        return JSONResponse(engine.stats())

    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("model") != MODEL_ID:
            return JSONResponse({"error": {"message": f"no model {body.get('model')!r}"}}, status_code=404)
        tokens = int(body.get("max_tokens") or default_tokens)
        sequence = engine.submit(tokens)
        if not body.get("stream"):
            words = [word async for word in _words(engine, sequence)]
            message = {"role": "assistant", "content": " ".join(words)}
            return JSONResponse(
                {
                    "object": "chat.completion",
                    "model": MODEL_ID,
                    "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
                    "usage": {"completion_tokens": tokens},
                }
            )
        return StreamingResponse(_events(engine, sequence, tokens), media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(engine.run())
        yield
        task.cancel()

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/stats", stats),
        ],
        lifespan=lifespan,
    )


async def _words(engine: Engine, sequence: _Sequence) -> AsyncIterator[str]:
    try:
        while (word := await sequence.out.get()) is not None:
            yield word
    finally:
        engine.cancel(sequence)  # no-op when it finished


async def _events(engine: Engine, sequence: _Sequence, tokens: int) -> AsyncIterator[bytes]:
    first = True
    async for word in _words(engine, sequence):
        chunk = {
            "object": "chat.completion.chunk",
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": {"content": word if first else " " + word}}],
        }
        first = False
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    end = {
        "object": "chat.completion.chunk",
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
        "usage": {"completion_tokens": tokens},
    }
    yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camcap.scale.stand_in", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="replica")
    parser.add_argument("--fixed-ms", type=float, default=Curve.fixed_ms, help="cost of a step, any batch")
    parser.add_argument("--per-item-ms", type=float, default=Curve.per_item_ms, help="cost per sequence in a step")
    parser.add_argument("--max-batch", type=int, default=Curve.max_batch, help="sequences decoded at once")
    parser.add_argument("--tokens", type=int, default=10, help="tokens when a request gives no max_tokens")
    args = parser.parse_args(argv)

    import uvicorn

    app = create_app(Curve(args.fixed_ms, args.per_item_ms, args.max_batch), name=args.name, default_tokens=args.tokens)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
