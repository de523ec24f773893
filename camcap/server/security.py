"""Who may use a camcap server, checked before any route sees a request.

Three rules, applied by `AccessControlMiddleware` to every HTTP request and WebSocket handshake:

1. Host: the `Host` header must name this server (a loopback name, the machine's names, the
   bind address, or any IP literal). A web page that rebinds its own domain name to 127.0.0.1
   (DNS rebinding) still sends its own name as Host, so it is refused.
2. Origin: a request sent by a web page carries `Origin`; it must be this server's own origin or
   one the user allowed (`--allow-origin`). Requests without `Origin` (curl, scripts) pass.
3. Token: when the policy has a token, every request must carry it, as `Authorization: Bearer`,
   `?token=`, or the `camcap_token` cookie that the server sets when a page is opened with
   `?token=` (browsers cannot put headers on a WebSocket, but they do send cookies).

The names a server answers to come from addresses.py; tokens, and `check_bind_safety`, which
decides when one is required, from tokens.py. See docs/security.md for the threat model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camcap.errors import AccessConfigError
from camcap.server.addresses import (
    LOOPBACK_NAMES,
    format_origin,
    host_from_header,
    ip_or_none,
    normalize_host,
    normalize_origin,
    served_names,
)
from camcap.server.openai_schema import error_body, speaks_openai
from camcap.server.tokens import TOKEN_QUERY, tokens_match, validate_token

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "camcap_token"
#: Answered without a token, and then only with `{"status": "ok"}`: a liveness probe for
#: supervisors and health checks that reveals nothing about the model or the streams.
OPEN_PATHS = frozenset({"/healthz"})
WS_POLICY_VIOLATION = 1008


# --- the policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessPolicy:
    """What a request must satisfy. Build one with `AccessPolicy.for_bind`.

    `allowed_origins` are normalized (`scheme://host[:port]`, default port dropped). A request's
    own origin (its scheme plus its allowed Host) is always allowed too, so pages served under any
    of the server's names or addresses work without listing each one.
    """

    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES
    #: Mark the token cookie `Secure` (only sent over HTTPS): set when the server speaks TLS.
    secure_cookie: bool = False

    def __post_init__(self) -> None:
        # An empty token would be "required" yet match `?token=`: no token is spelled None.
        if self.token is not None:
            validate_token(self.token)

    @classmethod
    def for_bind(
        cls,
        host: str,
        port: int,
        token: str | None = None,
        extra_origins: Sequence[str] = (),
        https: bool = False,
        *,
        extra_hosts: Sequence[str] = (),
        names: Sequence[str] | None = None,
    ) -> AccessPolicy:
        """The policy for a server listening on `host:port`.

        `names`: what the server is reached by; default `served_names(host)` (loopback names, plus
        the bind address and this machine's names when bound beyond loopback). `extra_origins`
        (`--allow-origin`) are pages elsewhere that may call the server; their host names are also
        accepted as Host, since a reverse proxy under that name forwards it. `extra_hosts` are more
        names the server is reached by.
        """
        scheme = "https" if https else "http"
        served = list(names) if names is not None else served_names(host)
        origins = [normalize_origin(value) for value in extra_origins]
        hosts = [*served, *(normalize_host(value) for value in extra_hosts)]
        hosts += [urlsplit(origin).hostname or "" for origin in origins]
        # Port 0 means the OS picks one later; the same-origin rule still covers those pages.
        own = [format_origin(scheme, name, port) for name in served] if port else []
        return cls(
            token=token,
            allowed_origins=tuple(dict.fromkeys([*own, *origins])),
            allowed_hosts=tuple(dict.fromkeys(name.lower() for name in hosts if name)),
            secure_cookie=https,
        )

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request's Host header names this server (with or without a port).

        No Host at all is allowed (HTTP/1.0 scripts; browsers always send one). Any IP literal is
        allowed: DNS rebinding needs a domain name, and a browser sends the name from the page's
        URL, so a Host that is an address means the page itself was loaded from that address.
        """
        if host_header is None:
            return True
        name = host_from_header(host_header)
        if name is None:
            return False
        return ip_or_none(name) is not None or name in self.allowed_hosts

    def origin_allowed(self, origin: str, host_header: str | None, scheme: str) -> bool:
        """Whether a page at `origin` may call this server (`scheme`: the request's, e.g. "wss")."""
        try:
            normalized = normalize_origin(origin)
        except AccessConfigError:
            return False  # "null" (sandboxed frames, file:// pages) or garbage
        if normalized in self.allowed_origins:
            return True
        if host_header is None:
            return False
        # Same origin: the page was served by this server under the name it is now calling.
        page_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        try:
            return normalized == normalize_origin(f"{page_scheme}://{host_header}")
        except AccessConfigError:
            return False


# --- the middleware -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    """Why a request was refused: an HTTP status, a stable code, and text that says what to do."""

    status: int
    code: str
    detail: str
    #: The WebSocket close reason: the gist of `detail` in at most 123 bytes.
    reason: str


class AccessControlMiddleware:
    """Pure ASGI middleware enforcing an `AccessPolicy` on HTTP requests and WebSocket handshakes.

    Pure ASGI (not `BaseHTTPMiddleware`) so WebSockets and streamed responses pass through as they
    are. A refused HTTP request gets a JSON `{"code", "detail"}` answer (400, 401 or 403); a refused
    WebSocket is closed with 1008 before it is accepted (clients see the handshake fail).
    """

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = self.policy.token
        supplied, source = None, "none"
        if token is not None:
            supplied, source = _supplied_token(scope, headers)
            # Drop ?token= from the query the app and the access log see, refused or not: uvicorn
            # logs this same scope dict, so the secret would otherwise land in the log.
            scope["query_string"] = _without_token(scope.get("query_string", b""))
        denial = self._check_host_and_origin(scope, headers)
        if denial is not None:
            await _refuse(denial, scope, receive, send)
            return
        if token is None:
            await self.app(scope, receive, send)
            return
        if not tokens_match(supplied, token):
            if scope["type"] == "http" and scope["path"] in OPEN_PATHS:
                await _json(200, {"status": "ok"}, send)
                return
            await _refuse(_missing_token() if supplied is None else _wrong_token(source), scope, receive, send)
            return
        if source == "query" and scope["type"] == "http" and _cookie(headers) != supplied:
            send = self._with_token_cookie(send, token)
        await self.app(scope, receive, send)

    def _check_host_and_origin(self, scope: Scope, headers: Headers) -> Denial | None:
        host = headers.get("host")
        if not self.policy.host_allowed(host):
            return _bad_host(host or "")
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin, host, scope.get("scheme", "http")):
            return _bad_origin(origin)
        return None

    def _with_token_cookie(self, send: Send, token: str) -> Send:
        # The page was opened with ?token=: remember the token for its own later requests (fetch
        # and WebSocket carry cookies, not custom headers). HttpOnly keeps page scripts from
        # reading it; SameSite=Strict keeps other sites' pages from sending it.
        cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        if self.policy.secure_cookie:
            cookie += "; Secure"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"set-cookie", cookie.encode("latin-1")), (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_cookie


def _supplied_token(scope: Scope, headers: Headers) -> tuple[str | None, str]:
    """The first token the client sent, and where: header, then query, then cookie."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "header"
    for key, query_value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if key == TOKEN_QUERY:
            return query_value, "query"
    cookie = _cookie(headers)
    if cookie is not None:
        return cookie, "cookie"
    return None, "none"


def _cookie(headers: Headers) -> str | None:
    return cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE)


def _without_token(query_string: bytes) -> bytes:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if all(key != TOKEN_QUERY for key, _ in pairs):
        return query_string  # untouched: re-encoding could change how the app reads other values
    return urlencode([(key, value) for key, value in pairs if key != TOKEN_QUERY]).encode("latin-1")


async def _refuse(denial: Denial, scope: Scope, receive: Receive, send: Send) -> None:
    logger.info("Refused %s %s: %s", scope["type"], scope.get("path", ""), denial.code)
    if scope["type"] == "websocket":
        # ASGI: the first message is the connect; closing before accepting rejects the handshake.
        await receive()
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": denial.reason})
        return
    extra = [(b"www-authenticate", b'Bearer realm="camcap"')] if denial.status == 401 else []
    body: dict[str, Any] = {"code": denial.code, "detail": denial.detail}
    if speaks_openai(scope.get("path", "")):  # OpenAI clients read OpenAI's error shape
        body = error_body(denial.status, denial.detail, denial.code)
    await _json(denial.status, body, send, extra)


async def _json(status: int, body: dict[str, Any], send: Send, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    content = json.dumps(body).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _missing_token() -> Denial:
    return Denial(
        401,
        "token_required",
        "This camcap server needs its access token. Open the URL that `camcap serve` printed when it started "
        "(it ends in ?token=...), or send the header `Authorization: Bearer <token>`.",
        "Access token required: open the URL camcap serve printed (it ends in ?token=...).",
    )


def _wrong_token(source: str) -> Denial:
    where = {"header": "Authorization header", "query": "?token= in the URL", "cookie": "camcap_token cookie"}
    return Denial(
        401,
        "token_invalid",
        f"The access token (from the {where.get(source, source)}) is wrong. A generated token changes each time "
        "the server starts: open the URL that `camcap serve` printed this time, or set a fixed one with --token "
        "(CAMCAP_TOKEN).",
        "Wrong access token: open the URL camcap serve printed this time.",
    )


def _bad_origin(origin: str) -> Denial:
    shown = origin[:100]
    return Denial(
        403,
        "origin_not_allowed",
        f"Requests from the web page at {shown!r} are not allowed: only pages this camcap server serves may "
        f"call it. If you trust that site, restart with --allow-origin {shown}.",
        "Origin not allowed: restart camcap serve with --allow-origin <origin> to trust it.",
    )


def _bad_host(host: str) -> Denial:
    # The allowed names are not listed: a DNS-rebinding page can read this answer, and the list
    # would tell it the machine's names and addresses.
    shown = host[:100]
    return Denial(
        400,
        "host_not_allowed",
        f"The Host header {shown!r} is not a name this server answers to (a guard against DNS rebinding). "
        "Open it by localhost, its IP address or this machine's name; if you reach it by this name on purpose "
        "(a reverse proxy, a DNS name), restart with --allow-origin <scheme>://<that name>.",
        "Host not allowed: open camcap by localhost, its IP address or its machine name.",
    )
