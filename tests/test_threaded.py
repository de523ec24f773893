"""`serve_in_thread` (camcap.server.threaded): a real uvicorn on a thread, started and stopped cleanly."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from camcap.server.threaded import serve_in_thread


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def test_the_app_answers_on_its_port_until_the_block_ends():
    app = Starlette(routes=[Route("/", hello)])
    with serve_in_thread(app) as (server, port):
        assert server.started
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "hello"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # nothing listens there any more


def test_an_app_that_cannot_start_raises_instead_of_hanging():
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no model")
        yield

    app = Starlette(routes=[Route("/", hello)], lifespan=broken)
    with pytest.raises(RuntimeError, match="stopped while starting"), serve_in_thread(app, lifespan="on"):
        pass
