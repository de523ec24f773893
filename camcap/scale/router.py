"""A small HTTP router for OpenAI-compatible replicas: each request goes to one of them.

It stands in, for the simulation and tests, for the router of a real deployment (the vLLM
production stack's router, Ray Serve's proxy, a Kubernetes Service); docs/scaling.md says which
to run in production. Two policies:

- `least_loaded` (default): the replica with the fewest requests in flight through this router,
  ties broken round robin. With continuous batching a replica's time per step grows with its
  batch, so keeping batches even keeps every camera's frame age the same.
- `round_robin`: replicas in turn, whatever they hold.

`POST /v1/chat/completions` is passed through byte for byte (streams stay streams); `GET
/v1/models` comes from the first replica; `GET /stats` counts requests per replica.

    python -m camcap.scale.router --port 8100 http://127.0.0.1:8101/v1 http://127.0.0.1:8102/v1
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

POLICIES = ("least_loaded", "round_robin")
# Hop-by-hop and length headers are the router's own business on each side.
_DROPPED = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


@dataclass
class _Replica:
    base_url: str  # ends in /v1
    inflight: int = 0
    sent: int = 0
    failed: int = 0


class Router:
    def __init__(self, replicas: Sequence[str], policy: str = "least_loaded") -> None:
        if policy not in POLICIES:
            raise ValueError(f"Unknown policy {policy!r}; choose one of: {', '.join(POLICIES)}.")
        if not replicas:
            raise ValueError("A router needs at least one replica URL.")
        self.replicas = [_Replica(url.rstrip("/")) for url in replicas]
        self.policy = policy
        self._turn = itertools.count()

    def choose(self) -> _Replica:
        start = next(self._turn) % len(self.replicas)
        ordered = self.replicas[start:] + self.replicas[:start]  # round robin among equals
        if self.policy == "round_robin":
            return ordered[0]
        return min(ordered, key=lambda replica: replica.inflight)

    def stats(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "replicas": [
                {"url": r.base_url, "inflight": r.inflight, "sent": r.sent, "failed": r.failed} for r in self.replicas
            ],
        }


def create_app(replicas: Sequence[str], policy: str = "least_loaded") -> Starlette:
    router = Router(replicas, policy)
    # Enough connections for every camera of a big site at once; no timeout of its own (the
    # front end's openai: backend has one, and a stream may rightly take long).
    client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256))

    async def models(request: Request) -> Response:
        upstream = await client.get(router.replicas[0].base_url + "/models", headers=_headers(request))
        return Response(upstream.content, upstream.status_code, media_type="application/json")

    async def stats(request: Request) -> Response:
        return JSONResponse(router.stats())

    async def chat(request: Request) -> Response:
        replica = router.choose()
        replica.inflight += 1
        replica.sent += 1
        try:
            upstream = await client.send(
                client.build_request(
                    "POST",
                    replica.base_url + "/chat/completions",
                    content=await request.body(),
                    headers=_headers(request),
                ),
                stream=True,
            )
        except httpx.HTTPError as exc:
            replica.inflight -= 1
            replica.failed += 1
            return JSONResponse({"error": {"message": f"replica {replica.base_url} failed: {exc}"}}, status_code=502)

        async def relay() -> AsyncIterator[bytes]:
            # In a finally, not a background task: a client that hangs up mid-stream skips the
            # response's background task, and the replica would count as busy for ever.
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                replica.inflight -= 1
                await upstream.aclose()

        return StreamingResponse(
            relay(), status_code=upstream.status_code, media_type=upstream.headers.get("content-type")
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/stats", stats),
        ],
        lifespan=lifespan,
    )


def _headers(request: Request) -> dict[str, str]:
    return {name: value for name, value in request.headers.items() if name.lower() not in _DROPPED}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camcap.scale.router", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "replicas", nargs="+", metavar="BASE_URL", help="each replica's API root, e.g. http://h:8000/v1"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--policy", choices=POLICIES, default="least_loaded")
    args = parser.parse_args(argv)

    import uvicorn

    uvicorn.run(
        create_app(args.replicas, args.policy), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
