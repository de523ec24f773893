"""camcap's own backends on Ray Serve: replicas of the captioner behind one OpenAI-compatible API.

For models vLLM and SGLang do not serve (Moondream 2 through transformers, `demo:shapes`, any
`hf:` or `random:` spec). Each replica is a whole camcap server (`create_app`: its scheduler, its
`/v1/chat/completions`, `/v1/models`, `/v1/info`, `/metrics`) on one slice of the cluster; Ray
Serve's proxy spreads requests over the replicas, replaces one that dies and, with autoscaling,
adds replicas as requests queue. camcap front ends use it like any engine:
`--model "openai:http://<ray-head>:8000/v1#<model>"`.

    pip install "camcap[ray]"
    serve run camcap.scale.ray_app:build_app model=moondream2 num_replicas=2 num_gpus=1
    serve run camcap.scale.ray_app:app          # model and replicas from CAMCAP_MODEL, defaults

Batching across requests is camcap's own scheduler inside each replica, not `@serve.batch`:
concurrent requests to a replica are streams of its scheduler, batched up to the model's max batch
with camcap's batching window, fair, and cancelled when their client goes (docs/scaling.md says
why, with the measurement). `max_ongoing_requests` per replica is kept at or under the replica's
`max_streams`, so Ray queues (and autoscales on) what a replica cannot take instead of the replica
answering 429.

Arguments (`serve run ... key=value`, or `build_app({...})`): `model`, `num_replicas` (a number,
or `auto` for autoscaling between `min_replicas` and `max_replicas`), `num_cpus`, `num_gpus`,
`max_ongoing_requests`, `target_ongoing_requests`, `port` (Ray's HTTP port, default 8000). Every
other camcap setting comes from CAMCAP_* variables, which are passed on to the replicas.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve import Application

DEFAULT_PORT = 8000  # Ray Serve's HTTP port
DEFAULT_MAX_ONGOING = 8  # requests a replica takes at once: camcap's max_streams default is at least this
ENV_PREFIX = "CAMCAP_"
# Where a replica says who it is (`GET /v1/replica`): how tests and operators see the spread.
REPLICA_ROUTE = "/v1/replica"


def build_app(args: Mapping[str, Any] | None = None) -> Application:
    """The Ray Serve application: one deployment of camcap servers. See the module docstring."""
    from ray import serve

    args = dict(args or {})
    from camcap.config import Settings

    model = str(args.pop("model", "") or Settings().model)  # CAMCAP_MODEL, or camcap's default
    port = int(args.pop("port", DEFAULT_PORT))
    max_ongoing = int(args.pop("max_ongoing_requests", DEFAULT_MAX_ONGOING))
    replicas = str(args.pop("num_replicas", "1"))
    actor = {"num_cpus": float(args.pop("num_cpus", 1)), "num_gpus": float(args.pop("num_gpus", 0))}
    scaling: dict[str, Any] = {}
    if replicas == "auto":
        # Ray Serve adds a replica when requests per replica stay above the target, and removes
        # one when they stay below; min 1 keeps a warm model (a cold start loads the weights).
        scaling["autoscaling_config"] = {
            "min_replicas": int(args.pop("min_replicas", 1)),
            "max_replicas": int(args.pop("max_replicas", 4)),
            "target_ongoing_requests": float(args.pop("target_ongoing_requests", max(1, max_ongoing // 2))),
            "upscale_delay_s": 10,
            "downscale_delay_s": 120,
        }
    else:
        scaling["num_replicas"] = int(replicas)
    if args:
        raise ValueError(
            f"Unknown camcap Ray app argument {', '.join(sorted(args))}; the arguments are model, num_replicas, "
            "min_replicas, max_replicas, target_ongoing_requests, max_ongoing_requests, num_cpus, num_gpus, port. "
            "Other camcap settings go in CAMCAP_* variables."
        )
    # The replicas read camcap's settings from the environment, like `camcap serve`: pass ours on,
    # with the model, and the port and streams that make each replica's server fit behind Ray's proxy.
    env = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    env.update(
        {
            "CAMCAP_MODEL": model,
            "CAMCAP_PORT": str(port),  # the Host header clients send is Ray's proxy's
            "CAMCAP_MAX_STREAMS": str(max(max_ongoing, int(env.get("CAMCAP_MAX_STREAMS", "0") or 0))),
            "CAMCAP_OPEN_BROWSER": "false",
        }
    )
    for name in ("HF_HUB_OFFLINE", "HF_HOME", "TRANSFORMERS_OFFLINE"):
        if name in os.environ:
            env[name] = os.environ[name]
    deployment = serve.deployment(
        serve.ingress(_camcap_server)(type("CamcapReplica", (), {})),
        name="camcap",
        max_ongoing_requests=max_ongoing,
        ray_actor_options={**actor, "runtime_env": {"env_vars": env}},
        health_check_period_s=5,
        **scaling,
    )
    return deployment.bind()


def _camcap_server() -> FastAPI:
    """Runs on each replica: camcap's server for the settings in its environment, ready only once
    its model has loaded (Ray sends it nothing before), with `GET /v1/replica` added."""
    from camcap.config import Settings
    from camcap.server.app import create_app

    app = create_app(Settings())
    served = {"chat_completions": 0}
    serving = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(server: FastAPI) -> AsyncIterator[None]:
        async with serving(server):
            await server.state.host.wait_settled()
            if server.state.host.error is not None:
                # Fail the replica's start: Ray reports the error and retries, rather than routing
                # requests to a replica that can only answer 503.
                raise RuntimeError(f"camcap could not load {server.state.settings.model}: {server.state.host.error}")
            yield

    app.router.lifespan_context = lifespan

    @app.middleware("http")
    async def count(request: Any, call_next: Any) -> Any:
        if request.url.path == "/v1/chat/completions":
            served["chat_completions"] += 1
        return await call_next(request)

    @app.get(REPLICA_ROUTE, include_in_schema=False)
    async def replica() -> dict[str, Any]:
        """Which replica answered, and how many chat completions it has taken."""
        return {"pid": os.getpid(), **served}

    return app


app = build_app  # `serve run camcap.scale.ray_app:app` builds with the defaults and CAMCAP_MODEL
