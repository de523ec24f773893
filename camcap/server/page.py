"""The page: `GET /` serves `camcap/web/index.html`, and `/static/...` the rest of that folder.

The page is plain files (no build step, no CDN). If they are missing (a broken install, or a
checkout before the page existed), `GET /` says so instead of answering 404.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter()

_FALLBACK = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>camcap</title></head>
<body>
<h1>camcap is running</h1>
<p>The web page is not installed (no <code>camcap/web/index.html</code>). The API works:
<a href="/v1/info">/v1/info</a>, <code>POST /v1/caption</code>, <code>WS /v1/stream</code>,
and the API document, <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """The live page, or a short note if the page's files are missing."""
    page = WEB_DIR / "index.html"
    if page.is_file():
        # no-cache: after an upgrade the browser revalidates instead of running yesterday's page.
        return FileResponse(page, headers={"Cache-Control": "no-cache"})
    return HTMLResponse(_FALLBACK)


def mount_static(app: FastAPI) -> None:
    """Serve the web folder under /static. Without the folder /static/... is a plain 404 (StaticFiles
    would answer every request with a 500 instead)."""
    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
