"""`camcap serve --log FILE` (camcap/outputs/log.py): one flushed JSON line per caption event,
rotated by size, and nothing written without it."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camcap.cli._parser import build_parser
from camcap.cli._settings import settings_from_args
from camcap.config import Settings
from camcap.engine.events import FrameCaption
from camcap.engine.timing import FrameTimings
from camcap.models.base import Caption, ModelInfo, Task, TaskKind, Timings
from camcap.outputs.log import LOG_BACKUPS, CaptionLog
from camcap.server.app import create_app
from camcap.server.messages import FRAME_MAGIC
from tests.cameras import MjpegCamera
from tests.live_server import free_port
from tests.test_server import recv, recv_until
from tests.test_server_e2e import LOAD_TIMEOUT, SPEC, jpeg

INFO = ModelInfo(
    name="random:blip-tiny", backend="transformers", device="cpu", dtype="float32",
    tasks=(TaskKind.CAPTION,), input_size=384, random_weights=True,
)  # fmt: skip


def _event(seq: int, text: str, stream: str | None = "s1", source: str | None = None) -> FrameCaption:
    timings = FrameTimings(
        receive_ms=None, queue_ms=1.0, image_decode_ms=1.0, preprocess_ms=1.0, first_token_ms=2.0,
        decode_ms=3.0, encode_ms=None, inference_ms=6.0, total_ms=8.0, tokens=4,
    )  # fmt: skip
    caption = Caption(index=0, text=text, task=Task.caption(), timings=Timings(1.0, 2.0, 3.0, 6.0, 4))
    return FrameCaption(
        seq=seq, caption=caption, timings=timings, skipped=0, captured_at=1_700_000_000_000.0 + seq,
        stream=stream, source=source,
    )  # fmt: skip


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _wait_for_lines(path: Path, count: int, timeout_s: float = 30) -> list[dict]:
    """The log's lines once it has `count` of them (written by the log's own thread)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(lines := _lines(path)) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} did not get {count} lines within {timeout_s} s")


def test_each_caption_is_one_line_flushed_at_once(tmp_path: Path) -> None:
    log = CaptionLog(tmp_path / "captions.jsonl", 1024 * 1024, lambda: INFO)
    log.start()
    try:
        log.write(_event(1, 'a line\nthat "breaks"'))
        # Read while the log is still open: the line is on disk, not waiting in a buffer.
        [line] = _wait_for_lines(tmp_path / "captions.jsonl", 1)
    finally:
        log.close()
    assert line["type"] == "caption" and line["seq"] == 1 and line["text"] == 'a line\nthat "breaks"'
    assert line["model"] == "random:blip-tiny" and line["random_weights"] is True
    assert line["captured_at"] == 1_700_000_000_001.0 and line["timings"]["tokens"] == 4
    assert line["logged_at"].endswith("+00:00")
    assert line["stream"] == "s1" and line["source"] is None


def test_each_line_says_which_stream_or_source_it_is_from(tmp_path: Path) -> None:
    log = CaptionLog(tmp_path / "captions.jsonl", 1024 * 1024, lambda: INFO)
    log.start()
    try:
        log.write(_event(1, "from a page", stream="s1"))
        log.write(_event(2, "from the door camera", stream="s2", source="door"))
        lines = _wait_for_lines(tmp_path / "captions.jsonl", 2)
    finally:
        log.close()
    assert [(line["stream"], line["source"], line["text"]) for line in lines] == [
        ("s1", None, "from a page"),
        ("s2", "door", "from the door camera"),
    ]


def test_the_log_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "captions.jsonl"
    log = CaptionLog(path, 2048, lambda: INFO)
    log.start()
    for seq in range(200):
        log.write(_event(seq, f"caption number {seq}"))
    log.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 + LOG_BACKUPS, [f.name for f in files]
    assert all(f.stat().st_size <= 2048 for f in files)
    # The current file holds the newest captions; the backups, older ones, oldest dropped.
    assert _lines(path)[-1]["seq"] == 199
    kept = [line["seq"] for n in range(LOG_BACKUPS, 0, -1) for line in _lines(Path(f"{path}.{n}"))] + [
        line["seq"] for line in _lines(path)
    ]
    assert kept == list(range(200 - len(kept), 200)), "rotation keeps the newest lines in order"


def test_serve_writes_no_log_unless_asked() -> None:
    assert settings_from_args(build_parser().parse_args(["serve"])).log is None
    settings = settings_from_args(build_parser().parse_args(["serve", "--log", "captions.jsonl"]))
    assert settings.log == Path("captions.jsonl")


@pytest.fixture(scope="module")
def logged_client(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    log_path = tmp_path_factory.mktemp("log") / "captions.jsonl"
    settings = Settings(
        model=SPEC, cache_dir=model_cache, max_new_tokens=5, allow_download=False, allow_hosts=["testserver"],
        log=log_path,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + LOAD_TIMEOUT
        while (info := client.get("/v1/info").json())["status"] == "loading":
            assert time.monotonic() < deadline, f"{SPEC} did not load within {LOAD_TIMEOUT} s"
            time.sleep(0.1)
        assert info["status"] == "ready", info["error"]
        yield client, log_path


@pytest.mark.slow
def test_a_real_server_logs_every_caption_of_every_stream(logged_client: tuple[TestClient, Path]) -> None:
    client, log_path = logged_client
    captions = []
    with client.websocket_connect("/v1/stream") as first, client.websocket_connect("/v1/stream") as second:
        stream_ids = [recv(first, timeout=60)["stream_id"], recv(second, timeout=60)["stream_id"]]
        for ws, seq, colour in ((first, 7, (200, 30, 30)), (second, 8, (30, 30, 200))):
            header = json.dumps({"seq": seq, "captured_at": 1000.0 + seq}).encode()
            ws.send_bytes(FRAME_MAGIC + struct.pack(">I", len(header)) + header + jpeg(colour))
            captions.append(recv_until(ws, "caption")[0])
        lines = _wait_for_lines(log_path, 2)
    assert [(line["seq"], line["text"], line["captured_at"]) for line in lines] == [
        (c["seq"], c["text"], c["captured_at"]) for c in captions
    ]
    # Each line names the stream it came from: the id its page was given in the ready event.
    assert [(line["stream"], line["source"]) for line in lines] == [(stream_ids[0], None), (stream_ids[1], None)]
    # The same record the WebSocket sent, plus when it was logged and whose it is.
    added = {"logged_at", "stream", "source"}
    assert {key: value for key, value in lines[0].items() if key not in added} == captions[0]


@pytest.mark.slow
def test_a_server_source_s_captions_are_logged_under_its_name(model_cache: Path, tmp_path: Path) -> None:
    camera = MjpegCamera(free_port())
    log_path = tmp_path / "captions.jsonl"
    settings = Settings(
        model=SPEC, cache_dir=model_cache, max_new_tokens=3, min_new_tokens=3, allow_download=False,
        allow_hosts=["testserver"], log=log_path, sources=[f"door={camera.url}"],
    )  # fmt: skip
    try:
        with TestClient(create_app(settings)):
            lines = _wait_for_lines(log_path, 2, timeout_s=120)
    finally:
        camera.stop()
    assert {line["source"] for line in lines} == {"door"}
    assert len({line["stream"] for line in lines}) == 1 and lines[0]["stream"].startswith("s")
    assert all(line["type"] == "caption" and line["text"] for line in lines)
