"""`camcap serve --source`: the server captions live sources continuously. A real random-weight
model, a real MJPEG camera served by the test, the real app through TestClient."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from camcap.cli import main
from camcap.config import Settings
from camcap.errors import CamcapError
from camcap.server.app import create_app
from tests.cameras import MjpegCamera
from tests.live_server import free_port

MODEL = "random:blip-tiny"
TOKEN = "test-token-0123456789abcdef"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def camera() -> Iterator[MjpegCamera]:
    camera = MjpegCamera(free_port())
    yield camera
    camera.stop()


@contextmanager
def serving(model_cache, sources: list[str], **settings: Any) -> Iterator[TestClient]:
    settings.setdefault("allow_hosts", ["testserver"])
    app = create_app(
        Settings(model=MODEL, cache_dir=model_cache, max_new_tokens=3, min_new_tokens=3, sources=sources, **settings)
    )
    with TestClient(app) as client:
        yield client


def until(check: Callable[[], Any], timeout: float = 120) -> Any:
    """Poll the API until `check()` returns something true (the model's pace sets the wait)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def source(client: TestClient, name: str, headers: dict[str, str] | None = None) -> dict:
    listing = client.get("/v1/sources", headers=headers).json()["sources"]
    return next(item for item in listing if item["name"] == name)


def test_sources_are_listed_captioned_snapshotted_and_counted(model_cache, camera):
    dead_port = free_port()
    with serving(model_cache, [f"cam={camera.url}", f"dead=rtsp://admin:hunter2@127.0.0.1:{dead_port}/x"]) as client:
        cam = until(lambda: (item := source(client, "cam"))["last_caption"] and item)
        assert cam["status"] == "up" and cam["kind"] == "http" and cam["url"] == camera.url
        assert cam["frames_read"] > 0 and cam["captioned"] >= 1
        caption = cam["last_caption"]
        assert caption["model"] == MODEL and caption["task"] == "caption" and caption["text"]
        assert caption["frame_age_ms"] >= caption["inference_ms"] > 0

        dead = until(lambda: (item := source(client, "dead"))["status"] == "down" and item)
        assert dead["url"] == f"rtsp://***@127.0.0.1:{dead_port}/x"
        assert "connection refused" in dead["error"]

        snapshot = client.get("/v1/sources/cam/snapshot.jpg")
        assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(snapshot.content)).size == (160, 120)
        missing = client.get("/v1/sources/nope/snapshot.jpg")
        assert missing.status_code == 404 and "cam, dead" in missing.json()["detail"]
        assert missing.json()["code"] == "unknown_source"
        assert client.get("/v1/sources/dead/snapshot.jpg").status_code == 503

        metrics = client.get("/metrics").text
        assert 'camcap_source_up{source="cam"} 1.0' in metrics
        assert 'camcap_source_frames_read_total{source="cam"}' in metrics
        assert 'camcap_source_reconnects_total{source="dead"}' in metrics
        everything = json.dumps(client.get("/v1/sources").json()) + metrics
        assert "hunter2" not in everything and "admin" not in everything


def test_websocket_subscribers_get_the_events_of_the_sources_they_chose(model_cache, camera):
    with serving(model_cache, [f"cam={camera.url}"]) as client, client.websocket_connect("/v1/sources/stream") as ws:
        ws.send_text(json.dumps({"type": "config", "sources": ["nope"]}))
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "bad_message" and "'nope'" in error["message"]
        ws.send_text(json.dumps({"type": "config", "sources": ["cam"]}))
        assert ws.receive_json() == {"type": "subscribed", "sources": ["cam"]}
        seen = []
        while not any(event["type"] == "source_caption" for event in seen):
            seen.append(ws.receive_json())
        caption = next(event for event in seen if event["type"] == "source_caption")
        assert set(caption) == {"type", "source", "seq", "at", "text", "task", "model", "frame_age_ms", "inference_ms"}
        assert caption["source"] == "cam" and caption["seq"] >= 1
        tokens = [event for event in seen if event["type"] == "source_token" and event["seq"] == caption["seq"]]
        assert "".join(token["text"] for token in tokens).strip() == caption["text"].strip()


def test_sources_follow_the_same_access_rules(model_cache, camera):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with serving(model_cache, [f"cam={camera.url}"], host="0.0.0.0", token=TOKEN, https=False) as client:
        assert client.get("/v1/sources").status_code == 401
        assert client.get("/v1/sources/cam/snapshot.jpg").status_code == 401
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/v1/sources/stream"):
            pass
        assert closed.value.code == 1008
        assert source(client, "cam", bearer)["name"] == "cam"


def test_sources_come_from_flags_or_the_environment(monkeypatch, model_cache):
    monkeypatch.setenv("CAMCAP_SOURCES", '["door=rtsp://admin:hunter2@cam.local/stream1"]')
    settings = Settings()
    assert [source.get_secret_value() for source in settings.sources] == ["door=rtsp://admin:hunter2@cam.local/stream1"]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    with pytest.raises(CamcapError, match="not ftp://"):
        create_app(Settings(model=MODEL, sources=["x=ftp://cam/x"]))


def test_serve_help_names_the_source_flag(capsys):
    assert main(["serve", "--help"]) == 0
    assert "--source NAME=URL" in capsys.readouterr().out


def test_watch_has_help(capsys):
    assert main(["watch", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: camcap watch") and "--max-captions" in out and "--realtime" in out
