"""The server end to end with a real random-weight checkpoint, through the real loading path.

No fake here: `create_app(Settings(model="random:blip-tiny"))` builds a tiny BLIP with random
weights into the session's model cache, loads it with transformers on the CPU, and serves it.
Captions are meaningless words; what is checked is the plumbing around them.
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from camcap.config import Settings
from camcap.server.app import create_app
from camcap.server.messages import FRAME_MAGIC, CaptionEvent, CaptionResponse, ReadyEvent
from tests.test_server import recv, recv_until

pytestmark = pytest.mark.slow

SPEC = "random:blip-tiny"
LOAD_TIMEOUT = 300.0  # building and loading a tiny checkpoint takes seconds; a loaded CI box, more
# min_new_tokens == max_new_tokens: every caption is exactly this many tokens, so the counts
# below are exact (a model that stopped at once would otherwise pass with none).
TOKENS = 5


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(model_cache: Path) -> Iterator[TestClient]:
    # allow_hosts: TestClient sends `Host: testserver`, which the DNS-rebinding guard refuses otherwise.
    settings = Settings(
        model=SPEC,
        cache_dir=model_cache,
        max_new_tokens=TOKENS,
        min_new_tokens=TOKENS,
        allow_download=False,
        allow_hosts=["testserver"],
    )
    app = create_app(settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + LOAD_TIMEOUT
        while (info := client.get("/v1/info").json())["status"] == "loading":
            assert time.monotonic() < deadline, f"{SPEC} did not load within {LOAD_TIMEOUT} s"
            time.sleep(0.1)
        assert info["status"] == "ready", info["error"]
        yield client


def test_info_describes_the_real_model(client):
    info = client.get("/v1/info").json()
    model = info["model"]
    assert (model["name"], model["backend"], model["device"], model["random_weights"]) == (
        SPEC,
        "transformers",
        "cpu",
        True,
    )
    assert "caption" in model["tasks"] and model["input_size"] > 0


def test_multipart_round_trip_with_a_real_model(client):
    response = client.post("/v1/caption", files={"image": ("frame.jpg", jpeg((200, 40, 40)), "image/jpeg")})
    assert response.status_code == 200, response.text
    body = CaptionResponse.model_validate(response.json())
    assert (body.model, body.task, body.random_weights) == (SPEC, "caption", True)
    assert body.caption.strip(), "a caption of five tokens has words"
    assert body.timings.tokens == TOKENS
    assert body.timings.total_ms >= body.timings.inference_ms > 0


def test_websocket_round_trip_with_a_real_model(client):
    with client.websocket_connect("/v1/stream") as ws:
        ready = ReadyEvent.model_validate(recv(ws, timeout=60))
        assert (ready.model.name, ready.model.random_weights) == (SPEC, True)
        for seq, colour in ((3, (30, 200, 30)), (4, (30, 30, 200))):
            header = json.dumps({"seq": seq, "captured_at": 1000.0 + seq, "sent_at": time.time() * 1000}).encode()
            ws.send_bytes(FRAME_MAGIC + struct.pack(">I", len(header)) + header + jpeg(colour))
            event, before = recv_until(ws, "caption")
            caption = CaptionEvent.model_validate(event)
            assert (caption.seq, caption.captured_at, caption.model, caption.random_weights) == (
                seq,
                1000.0 + seq,
                SPEC,
                True,
            )
            # Streamed: token events came first, for this frame only, and spell the caption.
            assert before, f"frame {seq} was captioned without any token event"
            assert all(e["type"] == "token" and e["seq"] == seq for e in before)
            assert "".join(e["text"] for e in before) == caption.text
            assert caption.text.strip() and caption.timings.tokens == TOKENS
            assert len(before) <= TOKENS
            assert caption.timings.receive_ms is not None


def test_a_task_the_real_model_cannot_do_is_named(client):
    tasks = client.get("/v1/info").json()["model"]["tasks"]
    if "point" in tasks:
        pytest.skip(f"{SPEC} can point")
    with client.websocket_connect("/v1/stream") as ws:
        recv(ws, timeout=60)
        ws.send_text(json.dumps({"type": "config", "task": "point", "target": "cup"}))
        error = recv(ws)
        assert error["code"] == "unsupported_task"
        assert f"supports: {', '.join(tasks)}" in error["message"]
