"""The app factory: `create_app(settings)` builds the whole server, and nothing is global.

The model loads once per app, on a thread started by the lifespan, and is shared by every
client; `app.state` holds only what all connections share and never writes per-client values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from camcap import __version__
from camcap.config import Settings
from camcap.models.base import Captioner
from camcap.server import http, page, websocket
from camcap.server.convert import frame_limits
from camcap.server.host import ModelHost


def create_app(settings: Settings, captioner: Captioner | None = None) -> FastAPI:
    """Build the camcap server for `settings`.

    `captioner`: a backend to serve instead of building one from `settings.model` (tests inject a
    fake one). Either way the app owns it: it is set up when the app starts (in the background;
    `GET /v1/info` says "loading" meanwhile) and closed when the app stops.
    """
    host = ModelHost(settings, captioner)

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
    app.state.frame_limits = frame_limits(settings)

    # Access-token and Origin/Host checks (server/security.py) go here, as middleware, before
    # any route sees a request.
    app.add_exception_handler(http.ApiError, _api_error)
    app.include_router(http.router)
    app.add_api_websocket_route("/v1/stream", websocket.stream_endpoint)
    app.include_router(page.router)
    page.mount_static(app)
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, http.ApiError)
    return exc.response()
