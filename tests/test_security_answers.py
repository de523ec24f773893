"""What the access middleware answers, word for word: camcap.server.security.

test_security.py checks which requests pass; this checks what a refused client is told (status,
headers, body, close reason) and the exact cookie a page gets. The texts are the user interface
of a refusal: each says what went wrong and what to do, and a mutation test showed that no test
read them whole.
"""

from __future__ import annotations

import pytest

from camcap.server.security import TOKEN_COOKIE, AccessPolicy
from tests.test_security import TOKEN, client_for, expect_ws_refused

TOKEN_REQUIRED = (
    "This camcap server needs its access token. Open the URL that `camcap serve` printed when it started "
    "(it ends in ?token=...), or send the header `Authorization: Bearer <token>`."
)


def token_invalid(where: str) -> str:
    return (
        f"The access token (from the {where}) is wrong. A generated token changes each time the server starts: "
        "open the URL that `camcap serve` printed this time, or set a fixed one with --token (CAMCAP_TOKEN)."
    )


def origin_not_allowed(shown: str) -> str:
    return (
        f"Requests from the web page at {shown!r} are not allowed: only pages this camcap server serves may call "
        f"it. If you trust that site, restart with --allow-origin {shown}."
    )


def host_not_allowed(shown: str) -> str:
    return (
        f"The Host header {shown!r} is not a name this server answers to (a guard against DNS rebinding). Open it "
        "by localhost, its IP address or this machine's name; if you reach it by this name on purpose (a reverse "
        "proxy, a DNS name), restart with --allow-origin <scheme>://<that name>."
    )


LONG_ORIGIN = "https://" + "o" * 150 + ".example"
LONG_HOST = "h" * 150
WRONG_HEADER = {"Authorization": "Bearer wrong-token-0123456789"}


@pytest.fixture
def client():
    return client_for(AccessPolicy.for_bind("127.0.0.1", 8000, token=TOKEN))


@pytest.mark.parametrize(
    ("headers", "params", "status", "code", "detail"),
    [
        ({}, {}, 401, "token_required", TOKEN_REQUIRED),
        (
            {"Authorization": "Bearer wrong-token-0123456789"},
            {},
            401,
            "token_invalid",
            token_invalid("Authorization header"),
        ),
        ({}, {"token": "wrong"}, 401, "token_invalid", token_invalid("?token= in the URL")),
        ({"Cookie": f"{TOKEN_COOKIE}=wrong"}, {}, 401, "token_invalid", token_invalid("camcap_token cookie")),
        ({"Origin": LONG_ORIGIN}, {"token": TOKEN}, 403, "origin_not_allowed", origin_not_allowed(LONG_ORIGIN[:100])),
        ({"Host": LONG_HOST}, {"token": TOKEN}, 400, "host_not_allowed", host_not_allowed(LONG_HOST[:100])),
    ],
    ids=["no-token", "wrong-header", "wrong-query", "wrong-cookie", "origin", "host"],
)
def test_a_refused_request_is_told_why_and_what_to_do(client, headers, params, status, code, detail):
    response = client.get("/v1/info", headers=headers, params=params)
    assert response.status_code == status
    assert response.json() == {"code": code, "detail": detail}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content)
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="camcap"'
    else:
        assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "Access token required: open the URL camcap serve printed (it ends in ?token=...)."),
        ({"params": "?token=wrong"}, "Wrong access token: open the URL camcap serve printed this time."),
        (
            {"headers": {"Origin": "https://evil.example"}},
            "Origin not allowed: restart camcap serve with --allow-origin <origin> to trust it.",
        ),
        (
            {"headers": {"Host": "attacker.example"}},
            "Host not allowed: open camcap by localhost, its IP address or its machine name.",
        ),
    ],
    ids=["no-token", "wrong-token", "origin", "host"],
)
def test_a_refused_websocket_is_told_why_in_its_close_reason(client, kwargs, reason):
    kwargs = dict(kwargs)  # the parameter is shared by every run of this test
    path = "/v1/stream" + kwargs.pop("params", "")
    if "Origin" in kwargs.get("headers", {}) or "Host" in kwargs.get("headers", {}):
        path += f"?token={TOKEN}"
    assert expect_ws_refused(client, path, **kwargs) == reason


@pytest.mark.parametrize(("https", "secure"), [(False, ""), (True, "; Secure")], ids=["http", "https"])
def test_the_page_opened_with_the_token_gets_exactly_this_cookie(https, secure):
    base = "https://localhost:8443" if https else "http://localhost:8000"
    client = client_for(AccessPolicy.for_bind("127.0.0.1", 8443 if https else 8000, token=TOKEN, https=https), base)
    response = client.get("/v1/info", params={"token": TOKEN})
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == [
        f"{TOKEN_COOKIE}={TOKEN}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ]
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]
    # The app's own headers are kept beside the added ones.
    assert response.headers["content-type"] == "application/json"


def test_an_empty_token_in_the_url_is_a_wrong_token_not_a_missing_one(client):
    response = client.get("/v1/info?token=")
    assert response.json() == {"code": "token_invalid", "detail": token_invalid("?token= in the URL")}


def test_the_token_is_taken_out_of_the_query_and_empty_values_are_kept(client):
    response = client.get("/v1/info?token=x&keep=", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json() == {"query": "keep="}


def test_a_refused_openai_client_gets_openais_error_shape(client):
    """The official `openai` client reads `error.message`; a camcap-shaped body would reach its
    user as an unexplained 401."""
    response = client.post("/v1/chat/completions", json={"model": "x", "messages": []})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="camcap"'
    assert response.json() == {
        "error": {"message": TOKEN_REQUIRED, "type": "authentication_error", "param": None, "code": "token_required"}
    }


def test_a_token_alone_in_the_query_leaves_the_app_an_empty_query(client):
    response = client.get("/v1/info", params={"token": TOKEN})
    assert response.status_code == 200
    assert response.json() == {"query": ""}


@pytest.mark.parametrize("spaces", [" ", "  "], ids=["one-space", "two-spaces"])
def test_a_bearer_token_after_any_number_of_spaces_is_read(client, spaces):
    """RFC 9110 puts one or more spaces between the scheme and the credentials."""
    assert client.get("/v1/info", headers={"Authorization": f"Bearer{spaces}{TOKEN}"}).status_code == 200


def test_another_authorization_scheme_is_not_taken_for_the_token(client):
    """A reverse proxy's Basic credentials pass through to camcap: they are not a wrong camcap
    token, and the token the page carries elsewhere still counts."""
    basic = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}
    assert client.get("/v1/info", headers=basic, params={"token": TOKEN}).status_code == 200
    client.cookies.clear()  # the answer set the token cookie
    refused = client.get("/v1/info", headers=basic)
    assert (refused.status_code, refused.json()["code"]) == (401, "token_required")


def test_an_origin_is_never_same_origin_with_a_missing_or_malformed_host():
    policy = AccessPolicy.for_bind("127.0.0.1", 8000, token=TOKEN)
    assert policy.origin_allowed("http://localhost:8000", None, "http")  # listed: no Host needed
    assert not policy.origin_allowed("http://evil.example", None, "http")
    # A Host whose port no origin can have: nothing can equal it, so the page is refused.
    assert not policy.origin_allowed("http://evil.example", "localhost:99999", "http")
    client = client_for(policy)
    headers = {"Host": "localhost:99999", "Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"}
    assert client.get("/v1/info", headers=headers).status_code == 403


def test_a_request_without_a_host_passes_the_host_rule():
    """HTTP/1.0 scripts send no Host; DNS rebinding needs one (a browser always sends it)."""
    assert AccessPolicy.for_bind("127.0.0.1", 8000, token=TOKEN).host_allowed(None)
