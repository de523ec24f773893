"""Hostile and broken input at every endpoint (hypothesis): never a 5xx, never a dead server.

One app on the fake backend serves a whole test (building one per example would cost more than
the examples). After each example the server must still answer, and after each WebSocket
example the same socket must still caption a good frame: a bad message costs an `error` event,
never the stream. Example counts are bounded so the module stays within a few seconds per test.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from camcap.config import Settings
from camcap.server.app import create_app
from camcap.server.messages import FRAME_MAGIC, ErrorCode
from tests.fakes import FakeCaptioner
from tests.test_server import recv, wait_ready

TOKEN = "fuzz-token-0123456789abcdef"
ACCESS_CODES = {"host_not_allowed", "origin_not_allowed", "token_required", "token_invalid"}
KNOWN_CODES = {code.value for code in ErrorCode} | ACCESS_CODES
SENTINEL_SEQ = 987_654_321  # far above any seq the strategies make
# Shared settings for every fuzz test: bounded, no per-example deadline (2 shared CPU cores).
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _image(fmt: str, size: tuple[int, int] = (24, 18), colour: tuple[int, int, int] = (90, 120, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


VALID_IMAGES = [_image("JPEG"), _image("PNG"), _image("WEBP")]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    fake = FakeCaptioner()
    # A high frame rate: the fuzz is about content, and waiting out the rate limit would only slow it.
    app = create_app(
        Settings(model="fake", allow_hosts=["testserver"], max_fps_per_stream=10_000, max_frame_pixels=512 * 512),
        captioner=fake,
    )
    with TestClient(app) as client:
        wait_ready(client)
        client.fake = fake  # type: ignore[attr-defined]
        yield client


def assert_alive(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    host = client.app.state.host  # type: ignore[attr-defined]
    assert host.scheduler is not None and host.scheduler.running, "the model worker died"


def assert_4xx_or_ok(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    json_error = response.headers.get("content-type", "").startswith("application/json") and response.content
    if response.status_code >= 400 and json_error:
        body = response.json()
        assert isinstance(body, dict) and "detail" in body, body
        if response.status_code in (404, 405) or (response.status_code == 422 and isinstance(body["detail"], list)):
            return  # routing, and FastAPI's own validation errors, keep FastAPI's shape
        # Everything else is camcap's shape: a stable code and a sentence that says what to do.
        assert body.get("code") in KNOWN_CODES, body
        assert isinstance(body["detail"], str) and body["detail"], body


# --- strategies ---------------------------------------------------------------------------------

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
any_text = st.text(max_size=300)


@st.composite
def mutated_image(draw: st.DrawFn) -> bytes:
    """A real image, then truncated, bit-flipped or spliced: the broken JPEGs and PNGs of the wild."""
    data = bytearray(draw(st.sampled_from(VALID_IMAGES)))
    how = draw(st.sampled_from(["truncate", "flip", "splice", "as is"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at]) + draw(st.binary(max_size=200)) + bytes(data[at:])
    return bytes(data)


magic_then_junk = st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b""]).flatmap(
    lambda magic: st.binary(max_size=400).map(lambda rest: magic + rest)
)
image_bytes = st.one_of(st.binary(max_size=600), magic_then_junk, mutated_image())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(printable, children, max_size=4),
    max_leaves=12,
)
config_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["config", "frame", "", "CONFIG"]) | any_text,
        "task": st.sampled_from(["caption", "query", "detect", "point", "dance"]) | any_text,
        "length": st.sampled_from(["short", "normal", "long", "epic"]) | json_values,
        "question": any_text | json_values | st.text(min_size=490, max_size=520),
        "target": any_text | json_values,
        "change_threshold": json_values,
        "cut_stale": json_values,
        "speed": json_values,
    },
)
text_messages = st.one_of(
    any_text,
    json_values.map(json.dumps),
    config_like.map(json.dumps),
    st.just("[" * 5000),  # deep nesting
    st.just('{"type": "config", "task": "query", "question": "' + "é" * 600 + '"}'),
)


@st.composite
def enveloped(draw: st.DrawFn) -> bytes:
    """FRAME_MAGIC + length + header + image, each part possibly wrong."""
    header = draw(
        st.one_of(
            st.fixed_dictionaries({"seq": st.integers(0, 1000)}).map(json.dumps),
            json_values.map(json.dumps),
            any_text,
        )
    ).encode("utf-8", "surrogatepass")
    length = draw(st.one_of(st.just(len(header)), st.integers(0, 2**32 - 1)))
    return FRAME_MAGIC + struct.pack(">I", length) + header + draw(image_bytes)


binary_messages = st.one_of(image_bytes, enveloped(), st.just(FRAME_MAGIC), st.just(b""))
ws_messages = st.lists(st.one_of(binary_messages, text_messages), min_size=1, max_size=8)

form_fields = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from(["caption", "query", "detect", "point", ""]) | printable,
        "length": st.sampled_from(["short", "normal", "long", ""]) | printable,
        "question": any_text | st.text(min_size=495, max_size=600),
        "target": any_text,
        "extra": printable,
    },
)
content_types = st.sampled_from(
    ["image/jpeg", "image/png", "text/plain", "application/octet-stream", "application/json", "", "x/y; z"]
)


# --- HTTP -----------------------------------------------------------------------------------------


@FUZZ
@given(image=image_bytes, filename=printable, content_type=content_types, fields=form_fields)
def test_post_caption_with_any_upload_is_never_a_5xx(client, image, filename, content_type, fields):
    response = client.post("/v1/caption", files={"image": (filename or "f", image, content_type or None)}, data=fields)
    assert_4xx_or_ok(response)
    if response.status_code >= 400:
        code = response.json().get("code")
        assert code is None or code in KNOWN_CODES  # None: FastAPI's own 422 shape
    assert_alive(client)


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=2000), json_values.map(lambda v: json.dumps(v).encode())),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=xyz",
            "application/x-www-form-urlencoded",
            "application/json",
            "text/plain",
        ]
    )
    | printable,
)
def test_post_caption_with_a_malformed_body_is_never_a_5xx(client, body, content_type):
    if body.startswith(b"--") or "multipart" in content_type:
        body = b"--xyz\r\n" + body  # get past the first boundary now and then
    response = client.post("/v1/caption", content=body, headers={"Content-Type": content_type})
    assert_4xx_or_ok(response)
    assert_alive(client)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.one_of(
        st.sampled_from(["/", "/healthz", "/v1/info", "/v1/caption", "/v1/stream", "/static/app.js", "/openapi.json"]),
        st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"), max_size=40).map(
            lambda p: "/" + p
        ),
        printable.map(lambda p: "/static/" + p.replace("?", "").replace("#", "")),
    ),
    query=st.dictionaries(printable, printable, max_size=3),
    body=st.binary(max_size=200),
)
def test_any_method_on_any_path_is_never_a_5xx(client, method, path, query, body):
    response = client.request(method, path, params=query, content=body if method not in ("GET", "HEAD") else None)
    assert_4xx_or_ok(response)
    assert_alive(client)


# --- WebSocket ------------------------------------------------------------------------------------


def _good_frame(seq: int) -> bytes:
    raw = json.dumps({"seq": seq}).encode()
    return FRAME_MAGIC + struct.pack(">I", len(raw)) + raw + _image("PNG", colour=(seq % 256, 7, 200))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=ws_messages)
def test_any_websocket_messages_get_error_events_and_the_stream_still_captions(client, messages):
    with client.websocket_connect("/v1/stream") as ws:
        assert recv(ws)["type"] == "ready"
        for message in messages:
            if isinstance(message, bytes):
                ws.send_bytes(message)
            else:
                ws.send_text(message)
        # Then a config back to plain captions and a good frame: the stream must answer it.
        ws.send_text(json.dumps({"type": "config", "task": "caption"}))
        ws.send_bytes(_good_frame(SENTINEL_SEQ))
        while True:
            event = recv(ws)
            if event["type"] == "error":
                assert event["code"] in KNOWN_CODES and event["message"], event
                assert event["code"] not in ("model_error", "server_closing"), event
            if event.get("seq") == SENTINEL_SEQ and event["type"] in ("caption", "unchanged"):
                break
    assert_alive(client)


# --- decompression bombs --------------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(1000, 1000), (30_000, 30_000), (2**31 - 1, 2**31 - 1)])
def test_decompression_bombs_are_refused_from_the_header_without_decoding(client, monkeypatch, size):
    decoded = []
    original_load = ImageFile.ImageFile.load

    def spy(self: Any) -> Any:
        decoded.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    bomb = _png_claiming(*size)
    assert len(bomb) < 200
    response = client.post("/v1/caption", files={"image": ("bomb.png", bomb, "image/png")})
    assert (response.status_code, response.json()["code"]) == (413, "frame_too_large")
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws)
        ws.send_bytes(bomb)
        assert recv(ws)["code"] == "frame_too_large"
    assert decoded == []


# --- behind the access checks ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded() -> Iterator[TestClient]:
    app = create_app(Settings(model="fake", token=TOKEN, allow_hosts=["testserver"]), captioner=FakeCaptioner())
    with TestClient(app) as client:
        yield client


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@FUZZ
@given(
    headers=st.fixed_dictionaries(
        {},
        optional={
            "Host": header_text | st.sampled_from(["testserver", "127.0.0.1:8000", "[::1]:1", "[bad", "a:b:c"]),
            "Origin": header_text | st.sampled_from(["null", "http://testserver", "file://", "http://[::1"]),
            "Authorization": header_text | st.just(f"Bearer {TOKEN}") | st.just("Bearer "),
            "Cookie": header_text | st.just(f"camcap_token={TOKEN}"),
        },
    ),
    query=st.dictionaries(st.sampled_from(["token", "x", ""]), header_text, max_size=2),
    path=st.sampled_from(["/", "/healthz", "/v1/info", "/v1/caption", "/static/app.js"]),
)
def test_access_checks_with_any_headers_are_never_a_5xx(guarded, headers, query, path):
    response = guarded.get(path, headers=headers, params=query)
    assert_4xx_or_ok(response)
    assert response.status_code in (200, 400, 401, 403, 404, 405), response.status_code
    assert TOKEN not in response.text  # the token never echoes back


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.fixed_dictionaries(
        {},
        optional={
            "Origin": header_text | st.just("http://testserver"),
            "Authorization": header_text | st.just(f"Bearer {TOKEN}"),
            "Cookie": header_text,
        },
    )
)
def test_websocket_handshakes_with_any_headers_are_accepted_or_closed_with_1008(guarded, headers):
    from starlette.websockets import WebSocketDisconnect

    try:
        with guarded.websocket_connect("/v1/stream", headers=headers) as ws:
            assert recv(ws)["type"] in ("ready", "error")
            allowed = True
    except WebSocketDisconnect as closed:
        assert closed.code == 1008
        allowed = False
    origin_ok = headers.get("Origin") in (None, "http://testserver")
    assert allowed == (origin_ok and headers.get("Authorization") == f"Bearer {TOKEN}")
