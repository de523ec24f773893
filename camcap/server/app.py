"""The app factory: `create_app(settings)` builds the whole server, and nothing is global.

The model loads once per app, on a thread started by the lifespan, and is shared by every
client; `app.state` holds only what all connections share and never writes per-client values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from camcap import __version__
from camcap.config import Settings
from camcap.models.base import Captioner
from camcap.server import http, metrics, openai_compat, page, websocket
from camcap.server.convert import frame_limits
from camcap.server.host import ModelHost
from camcap.server.limits import BodySizeLimitMiddleware, StreamLimits, StreamSlots
from camcap.server.security import AccessControlMiddleware, AccessPolicy
from camcap.server.tokens import check_bind_safety


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn must run a camcap app: shared by `camcap serve` and `camcap bench`, so the
    benchmark measures the server users get."""
    return {
        "ws_max_size": settings.ws_max_size(),
        # Messages a client may have waiting unread (uvicorn's default 32 x ws_max_size could hold
        # 256 MiB per connection); the page sends one frame at a time.
        "ws_max_queue": 4,
        # Frames are JPEG: deflate shrinks them by under 1 % and cost 1.3-1.8 ms of a 2.3 ms
        # loopback round trip (camcap bench, docs/benchmarks.md).
        "ws_per_message_deflate": False,
        # Ctrl+C waits this long for captions in progress, then cancels them.
        "timeout_graceful_shutdown": 5,
    }


def create_app(settings: Settings, captioner: Captioner | None = None) -> FastAPI:
    """Build the camcap server for `settings`.

    `captioner`: a backend to serve instead of building one from `settings.model` (tests inject a
    fake one). Either way the app owns it: it is set up when the app starts (in the background;
    `GET /v1/info` says "loading" meanwhile) and closed when the app stops.

    Raises `AccessConfigError` when `settings` would expose the server unsafely (listening beyond
    loopback without `settings.token`) or name a token, origin or host that cannot be used; the
    CLI generates and prints a token before calling this.
    """
    # First, before anything is built: an unsafe configuration must not get as far as a socket.
    given = settings.token.get_secret_value() if settings.token is not None else None
    token = check_bind_safety(settings.host, given, generate=False)
    policy = AccessPolicy.for_bind(
        settings.host,
        settings.port,
        token,
        settings.allow_origins,
        settings.serves_https(),
        extra_hosts=settings.allow_hosts,
    )
    server_metrics = metrics.ServerMetrics()
    host = ModelHost(settings, captioner, observer=server_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        host.start()
        try:
            yield
        finally:
            await host.aclose()

    app = FastAPI(title="camcap", version=__version__, lifespan=lifespan)
    # Shared and read-only for route code; per-connection state lives in server.session.Session.
    app.state.settings = settings
    app.state.host = host
    app.state.metrics = server_metrics
    app.state.frame_limits = frame_limits(settings)
    app.state.stream_limits = StreamLimits.from_settings(settings)
    # Shared and mutable: counts the clients being served (streams and one-shot captions).
    app.state.stream_slots = StreamSlots(settings.max_streams)

    # The last added runs first: who may ask (Host, Origin, token), then how much they may send,
    # so a stranger's upload is refused before a byte of it is read.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.upload_max_size())
    app.add_middleware(AccessControlMiddleware, policy=policy)
    app.add_exception_handler(http.ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, http.unreadable_body)
    app.include_router(http.router)
    app.include_router(metrics.router)
    openai_compat.install(app)  # POST /v1/chat/completions, GET /v1/models
    app.add_api_websocket_route("/v1/stream", websocket.stream_endpoint)
    app.include_router(page.router)
    page.mount_static(app)
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, http.ApiError)
    return exc.response()
