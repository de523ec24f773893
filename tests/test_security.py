"""The access rules (Host, Origin, token) on a tiny app of our own, over HTTP and WebSocket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from camcap.errors import AccessConfigError
from camcap.server.security import TOKEN_COOKIE, AccessControlMiddleware, AccessPolicy
from camcap.server.threaded import serve_in_thread
from camcap.server.tokens import MIN_TOKEN_CHARS

TOKEN = "s3cret-token-for-tests-0123456789"
BASE = "http://localhost:8000"


async def info(request: Request) -> JSONResponse:
    return JSONResponse({"query": request.url.query})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "model": "ready"})


async def upload(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(f"echo {await websocket.receive_text()}")
    await websocket.close()


def make_app(policy: AccessPolicy, lifespan_log: list[str] | None = None) -> AccessControlMiddleware:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if lifespan_log is not None:
            lifespan_log.append("started")
        yield

    routes = [
        Route("/v1/info", info),
        Route("/healthz", healthz),
        Route("/v1/caption", upload, methods=["POST"]),
        WebSocketRoute("/v1/stream", echo),
    ]
    return AccessControlMiddleware(Starlette(routes=routes, lifespan=lifespan), policy)


def client_for(policy: AccessPolicy, base_url: str = BASE) -> TestClient:
    return TestClient(make_app(policy), base_url=base_url)


@pytest.fixture
def client() -> TestClient:
    return client_for(AccessPolicy.for_bind("127.0.0.1", 8000, token=TOKEN))


def ws_url(client: TestClient, path: str) -> str:
    # websocket_connect resolves relative paths against ws://testserver; use the client's host.
    return str(client.base_url).rstrip("/").replace("http", "ws", 1) + path


def expect_ws_refused(client: TestClient, path: str, **kwargs: object) -> str:
    with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect(ws_url(client, path), **kwargs):  # type: ignore[arg-type]
        pass
    assert caught.value.code == 1008
    return caught.value.reason


def ws_echo(client: TestClient, path: str, **kwargs: object) -> str:
    with client.websocket_connect(ws_url(client, path), **kwargs) as ws:  # type: ignore[arg-type]
        ws.send_text("hi")
        return ws.receive_text()


# --- the policy ---------------------------------------------------------------------------------


def test_a_policy_refuses_an_empty_or_weak_token() -> None:
    with pytest.raises(AccessConfigError):
        AccessPolicy(token="")
    with pytest.raises(AccessConfigError):
        AccessPolicy.for_bind("0.0.0.0", 8000, token="short")


def test_loopback_policy_allows_its_own_origins() -> None:
    policy = AccessPolicy.for_bind("127.0.0.1", 8000)
    assert policy.token is None
    assert {"http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"} <= set(policy.allowed_origins)
    assert set(policy.allowed_hosts) == {"127.0.0.1", "localhost", "::1"}
    assert not policy.secure_cookie


def test_https_policy_allows_https_origins_only() -> None:
    policy = AccessPolicy.for_bind("127.0.0.1", 8443, https=True)
    assert "https://localhost:8443" in policy.allowed_origins
    assert not any(origin.startswith("http:") for origin in policy.allowed_origins)
    assert policy.secure_cookie


def test_wide_policy_adds_the_machine_names_and_extras() -> None:
    policy = AccessPolicy.for_bind(
        "0.0.0.0",
        8000,
        token=TOKEN,
        extra_origins=["HTTPS://Camcap.Example.com:443/"],
        extra_hosts=["proxy.lan:8080"],
        names=["localhost", "127.0.0.1", "mybox", "mybox.local", "192.168.1.20"],
    )
    assert "http://mybox.local:8000" in policy.allowed_origins
    assert "http://192.168.1.20:8000" in policy.allowed_origins
    assert "https://camcap.example.com" in policy.allowed_origins  # normalized
    assert {"mybox", "mybox.local", "camcap.example.com", "proxy.lan"} <= set(policy.allowed_hosts)


@pytest.mark.parametrize(
    "origin", ["example.com", "ftp://example.com", "https://example.com/page", "null", "https://u:p@example.com"]
)
def test_bad_extra_origins_say_what_is_expected(origin: str) -> None:
    with pytest.raises(AccessConfigError, match=r"scheme://host\[:port\]"):
        AccessPolicy.for_bind("127.0.0.1", 8000, extra_origins=[origin])


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("LocalHost.:9000", True),  # ports may differ: ssh -L 9000:localhost:8000
        ("127.0.0.1:8000", True),
        ("[::1]:8000", True),
        ("192.168.1.20:8000", True),  # an IP literal cannot be a rebinding attack
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("localhost:80x", False),
        ("[::1", False),
        ("", False),
        ("evil.example@localhost", False),
    ],
)
def test_host_header_rules(host: str, allowed: bool) -> None:
    assert AccessPolicy.for_bind("127.0.0.1", 8000).host_allowed(host) is allowed


@given(st.text(max_size=60))
def test_host_and_origin_checks_never_raise(value: str) -> None:
    policy = AccessPolicy.for_bind("127.0.0.1", 8000)
    policy.host_allowed(value)
    policy.origin_allowed(value, value, "ws")


# --- token comparison, through the middleware ---------------------------------------------------


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60).filter(lambda s: s != TOKEN))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_middleware_refuses_every_other_token(supplied: str) -> None:
    client = client_for(AccessPolicy(token=TOKEN))
    response = client.get("/v1/info", params={"token": supplied})
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=MIN_TOKEN_CHARS, max_size=60))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_middleware_accepts_any_configured_token(token: str) -> None:
    client = client_for(AccessPolicy(token=token))
    assert client.get("/v1/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/v1/info", headers={"Authorization": f"Bearer {token}x"}).status_code == 401


# --- the token over HTTP ------------------------------------------------------------------------


def test_no_token_is_401_with_what_to_do(client: TestClient) -> None:
    response = client.get("/v1/info")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["code"] == "token_required"
    assert "?token=" in body["detail"] and "Authorization: Bearer" in body["detail"]
    assert TOKEN not in response.text


def test_wrong_token_is_401(client: TestClient) -> None:
    for kwargs in ({"headers": {"Authorization": "Bearer nope"}}, {"params": {"token": "nope"}}):
        response = client.get("/v1/info", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"
        assert "printed" in response.json()["detail"]
    client.cookies.set(TOKEN_COOKIE, "stale-token-from-last-run")
    response = client.get("/v1/info")
    assert response.status_code == 401 and "cookie" in response.json()["detail"]


def test_token_by_header(client: TestClient) -> None:
    response = client.get("/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers  # scripts that send headers need no cookie


def test_token_by_cookie(client: TestClient) -> None:
    client.cookies.set(TOKEN_COOKIE, TOKEN)
    assert client.get("/v1/info").status_code == 200
    assert client.post("/v1/caption", content=b"x" * 10).json() == {"received": 10}


def test_token_by_query_sets_the_cookie_for_the_page(client: TestClient) -> None:
    response = client.get("/v1/info", params={"token": TOKEN, "keep": "1"})
    assert response.status_code == 200
    # The app (and uvicorn's access log, which reads the same scope) never sees the secret.
    assert response.json() == {"query": "keep=1"}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    assert response.headers["referrer-policy"] == "no-referrer"
    # The page's later requests carry the cookie instead of the query.
    assert client.get("/v1/info").status_code == 200
    assert ws_echo(client, "/v1/stream") == "echo hi"


def test_the_token_never_reaches_the_log_even_when_refused() -> None:
    # uvicorn's access log prints the scope's query string after the app ran: check that scope.
    middleware = make_app(AccessPolicy.for_bind("127.0.0.1", 8000, token=TOKEN))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"host", b"localhost:8000"), (b"origin", b"https://evil.example")]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/v1/info", "headers": headers, "scheme": "http"}
    scope["query_string"] = f"a=1&token={TOKEN}&b=2".encode()
    anyio.run(middleware, scope, receive, send)
    assert sent[0]["status"] == 403
    assert scope["query_string"] == b"a=1&b=2"


def test_query_token_is_stripped_when_a_header_carries_it_too(client: TestClient) -> None:
    response = client.get("/v1/info?x=%C3%A9&token=other", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.json() == {"query": "x=%C3%A9"}
    assert client.get("/v1/info?x=%C3%A9+y", headers={"Authorization": f"Bearer {TOKEN}"}).json() == {
        "query": "x=%C3%A9+y"
    }


def test_the_cookie_is_secure_over_https() -> None:
    client = client_for(AccessPolicy.for_bind("127.0.0.1", 8443, token=TOKEN, https=True), "https://localhost:8443")
    response = client.get("/", params={"token": TOKEN})
    assert "; Secure" in response.headers["set-cookie"]


def test_healthz_answers_without_a_token_but_reveals_nothing(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    authorized = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.json() == {"status": "ok", "model": "ready"}


def test_no_token_policy_lets_requests_through() -> None:
    client = client_for(AccessPolicy.for_bind("127.0.0.1", 8000))
    assert client.get("/v1/info").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok", "model": "ready"}
    assert ws_echo(client, "/v1/stream") == "echo hi"


def test_lifespan_passes_through() -> None:
    log: list[str] = []
    with TestClient(make_app(AccessPolicy(token=TOKEN), log), base_url=BASE):
        assert log == ["started"]


# --- the token over WebSocket -------------------------------------------------------------------


def test_websocket_without_token_is_closed_with_1008(client: TestClient) -> None:
    reason = expect_ws_refused(client, "/v1/stream")
    assert "token" in reason


def test_websocket_with_wrong_token_is_closed_with_1008(client: TestClient) -> None:
    expect_ws_refused(client, "/v1/stream?token=nope")
    expect_ws_refused(client, "/v1/stream", headers={"Authorization": "Bearer nope"})


def test_websocket_with_token_by_query_header_or_cookie(client: TestClient) -> None:
    assert ws_echo(client, f"/v1/stream?token={TOKEN}") == "echo hi"
    assert ws_echo(client, "/v1/stream", headers={"Authorization": f"Bearer {TOKEN}"}) == "echo hi"
    assert ws_echo(client, "/v1/stream", headers={"Cookie": f"{TOKEN_COOKIE}={TOKEN}"}) == "echo hi"


# --- Origin -------------------------------------------------------------------------------------


def test_cross_origin_post_is_403_with_what_to_do(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"}
    response = client.post("/v1/caption", content=b"x", headers=headers)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "origin_not_allowed"
    assert "--allow-origin https://evil.example" in body["detail"]


@pytest.mark.parametrize("origin", ["http://localhost:8000", "http://LOCALHOST:8000/", "http://127.0.0.1:8000"])
def test_own_origins_may_post(client: TestClient, origin: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": origin}
    assert client.post("/v1/caption", content=b"xy", headers=headers).json() == {"received": 2}


@pytest.mark.parametrize("origin", ["null", "http://localhost:9999", "https://localhost:8000", "http://localhost"])
def test_near_miss_origins_are_refused(client: TestClient, origin: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": origin}
    assert client.post("/v1/caption", content=b"x", headers=headers).status_code == 403


def test_same_origin_under_any_allowed_address() -> None:
    # Opened as http://192.168.1.20:8000 from a phone: the page's own origin is accepted
    # without listing every LAN address.
    client = client_for(
        AccessPolicy.for_bind("0.0.0.0", 8000, token=TOKEN, names=["localhost"]), "http://192.168.1.20:8000"
    )
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://192.168.1.20:8000"}
    assert client.post("/v1/caption", content=b"x", headers=headers).status_code == 200
    headers["Origin"] = "http://192.168.1.21:8000"
    assert client.post("/v1/caption", content=b"x", headers=headers).status_code == 403


def test_same_origin_over_https_under_any_allowed_address() -> None:
    # Served with TLS and opened as https://192.168.1.20:8443: the page's origin is https, so an
    # http page under that address is another origin, refused over HTTP and WebSocket alike.
    policy = AccessPolicy.for_bind("0.0.0.0", 8443, token=TOKEN, https=True, names=["localhost"])
    client = client_for(policy, "https://192.168.1.20:8443")
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://192.168.1.20:8443"}
    assert client.post("/v1/caption", content=b"x", headers=headers).status_code == 200
    assert ws_echo(client, f"/v1/stream?token={TOKEN}", headers={"Origin": "https://192.168.1.20:8443"}) == "echo hi"
    headers["Origin"] = "http://192.168.1.20:8443"
    assert client.post("/v1/caption", content=b"x", headers=headers).status_code == 403
    expect_ws_refused(client, f"/v1/stream?token={TOKEN}", headers={"Origin": "http://192.168.1.20:8443"})


def test_allowed_extra_origin() -> None:
    policy = AccessPolicy.for_bind("127.0.0.1", 8000, token=TOKEN, extra_origins=["https://dash.example"])
    client = client_for(policy)
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://dash.example"}
    assert client.post("/v1/caption", content=b"x", headers=headers).status_code == 200
    assert ws_echo(client, f"/v1/stream?token={TOKEN}", headers={"Origin": "https://dash.example"}) == "echo hi"


def test_requests_without_origin_only_need_the_token(client: TestClient) -> None:
    assert client.post("/v1/caption", content=b"x", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_cross_origin_is_refused_even_without_a_token_policy() -> None:
    # The loopback default: no token, so Origin is what keeps other sites' pages out.
    client = client_for(AccessPolicy.for_bind("127.0.0.1", 8000))
    assert client.post("/v1/caption", content=b"x", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.get("/v1/info", headers={"Origin": "https://evil.example"}).status_code == 403
    reason = expect_ws_refused(client, "/v1/stream", headers={"Origin": "https://evil.example"})
    assert "--allow-origin" in reason


def test_websocket_with_bad_origin_is_closed_with_1008_even_with_the_token(client: TestClient) -> None:
    expect_ws_refused(client, f"/v1/stream?token={TOKEN}", headers={"Origin": "https://evil.example"})


def test_websocket_with_own_origin(client: TestClient) -> None:
    assert ws_echo(client, f"/v1/stream?token={TOKEN}", headers={"Origin": "http://localhost:8000"}) == "echo hi"


# --- Host ---------------------------------------------------------------------------------------


def test_rebound_host_is_400_and_reveals_no_names() -> None:
    policy = AccessPolicy.for_bind("0.0.0.0", 8000, names=["localhost", "secret-box.local", "192.168.1.20"])
    client = client_for(policy, "http://rebind.evil.example:8000")
    response = client.get("/v1/info")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "host_not_allowed" and "DNS rebinding" in body["detail"]
    assert "secret-box" not in response.text and "192.168" not in response.text


def test_rebound_host_is_refused_before_the_token_counts(client: TestClient) -> None:
    response = client.get("/v1/info", headers={"Host": "rebind.evil.example:8000", "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    assert client.get("/healthz", headers={"Host": "rebind.evil.example"}).status_code == 400


def test_websocket_with_rebound_host_is_closed_with_1008(client: TestClient) -> None:
    reason = expect_ws_refused(client, f"/v1/stream?token={TOKEN}", headers={"Host": "rebind.evil.example:8000"})
    assert "Host" in reason


def test_close_reasons_fit_a_close_frame(client: TestClient) -> None:
    reasons = [
        expect_ws_refused(client, "/v1/stream"),
        expect_ws_refused(client, "/v1/stream?token=nope"),
        expect_ws_refused(client, "/v1/stream", headers={"Origin": "https://" + "e" * 200 + ".example"}),
        expect_ws_refused(client, "/v1/stream", headers={"Host": "x" * 300}),
    ]
    assert all(0 < len(reason.encode("utf-8")) <= 123 for reason in reasons)


# --- a real server ------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(app: AccessControlMiddleware) -> Iterator[int]:
    """Run `app` under uvicorn on 127.0.0.1 (an OS-picked port) in a thread; yields the port."""
    with serve_in_thread(app, lifespan="off", ws="websockets-sansio") as (_, port):
        yield port


def test_real_server_refuses_the_handshake_and_accepts_the_token() -> None:
    with serving(make_app(AccessPolicy(token=TOKEN))) as port:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/info", timeout=10).status_code == 401
        assert httpx.get(f"{base}/v1/info", params={"token": TOKEN}, timeout=10).status_code == 200
        # uvicorn turns a close before accept into an HTTP 403 answer to the handshake.
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10).close()
        assert refused.value.response.status_code == 403
        with ws_connect(f"ws://127.0.0.1:{port}/v1/stream?token={TOKEN}", open_timeout=10, close_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == "echo hi"
