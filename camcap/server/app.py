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
from camcap.alerts.build import engine_from_settings
from camcap.config import Settings
from camcap.engine.frames import DecodeBudget
from camcap.models.base import Captioner
from camcap.outputs.log import CaptionLog, ObserverGroup
from camcap.server import alerts, http, metrics, openai_compat, page, sources, websocket
from camcap.server.closing import ClosingNotice
from camcap.server.convert import frame_limits
from camcap.server.host import ModelHost
from camcap.server.limits import BodySizeLimitMiddleware, StreamLimits, StreamSlots
from camcap.server.security import AccessControlMiddleware, AccessPolicy
from camcap.server.serving import connection_cap, guarded_http_protocol
from camcap.server.tokens import check_bind_safety
from camcap.server.uploads import UploadBudget, UploadGuardMiddleware


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
        # Ctrl+C waits this long for responses in progress, then cancels them. Requests that are
        # only waiting (a body arriving, a caption not yet begun) answer 503 at once (closing.py).
        "timeout_graceful_shutdown": 5,
        # Connections beyond what the descriptors allow are closed at once, and so are connections
        # that send no complete request in time: running out of descriptors must not stop the server.
        "http": guarded_http_protocol(connection_cap(settings.max_connections), settings.header_timeout_s),
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
    # Nothing about the streams is written unless asked (`serve --log FILE`).
    caption_log = None if settings.log is None else CaptionLog(settings.log, settings.log_max_bytes, lambda: host.info)
    observer = server_metrics if caption_log is None else ObserverGroup(server_metrics, caption_log)
    host = ModelHost(settings, captioner, observer=observer)
    # Rules (--alert, --rules) and sinks (--webhook, --mqtt): a bad rule fails here, naming its line.
    alert_hub = alerts.AlertHub(engine_from_settings(settings))
    alerts.install(alert_hub, server_metrics.registry)
    source_hub = sources.SourceHub.from_settings(settings, host, alert_hub)
    sources.install(source_hub, server_metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if caption_log is not None:
            caption_log.start()
        host.start()
        source_hub.start()
        try:
            yield
        finally:
            await source_hub.aclose()
            alert_hub.close()
            await host.aclose()
            if caption_log is not None:
                caption_log.close()

    # No /docs or /redoc: FastAPI's pages load their scripts, styles and favicon from CDNs, and
    # nothing camcap serves may make a browser reach off the machine. /openapi.json stays.
    app = FastAPI(title="camcap", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    # Shared and read-only for route code; per-connection state lives in server.session.Session.
    app.state.settings = settings
    app.state.host = host
    app.state.metrics = server_metrics
    app.state.sources = source_hub
    app.state.alerts = alert_hub
    app.state.frame_limits = frame_limits(settings)
    app.state.stream_limits = StreamLimits.from_settings(settings)
    # Shared and mutable: counts the clients being served (streams and one-shot captions).
    app.state.stream_slots = StreamSlots(settings.max_streams)
    # Shared and mutable: the pixels being decoded at once, every client together.
    app.state.decode_budget = DecodeBudget(settings.max_decode_pixels)
    # Set when the server begins to stop (serving.CamcapServer): waiting requests answer at once.
    app.state.closing = ClosingNotice()

    # The last added runs first: who may ask (Host, Origin, token), then how much they may send,
    # so a stranger's upload is refused before a byte of it is read, then how long it may take.
    budget = UploadBudget(settings.upload_bytes_in_flight())
    app.add_middleware(
        UploadGuardMiddleware, budget=budget, timeout_s=settings.upload_timeout_s, closing=app.state.closing
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.upload_max_size())
    app.add_middleware(AccessControlMiddleware, policy=policy)
    app.add_exception_handler(http.ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, http.unreadable_body)
    app.include_router(http.router)
    app.include_router(metrics.router)
    openai_compat.install(app)  # POST /v1/chat/completions, GET /v1/models
    app.add_api_websocket_route("/v1/stream", websocket.stream_endpoint)
    app.include_router(sources.router)
    app.include_router(alerts.router)
    app.add_api_websocket_route("/v1/sources/stream", sources.sources_endpoint)
    app.include_router(page.router)
    page.mount_static(app)
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, http.ApiError)
    return exc.response()
