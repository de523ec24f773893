"""Live sources against real cameras started by the tests: an HTTP MJPEG camera in this process,
GStreamer's RTSP server in a subprocess, a video file played at its own rate. Captions come from a
real random-weight model through the real scheduler (in-process) or the real `camcap watch`."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from camcap.engine.scheduler import Scheduler
from camcap.models.base import Task
from camcap.models.options import ModelOptions
from camcap.models.registry import create_captioner
from camcap.outputs.record import CaptionEvent
from camcap.sources.live import LiveSource
from camcap.sources.reader import ReaderOptions, SourceChange, SourceReader, SourceState
from camcap.sources.spec import parse_source
from tests.cameras import MjpegCamera, RtspCamera
from tests.live_server import free_port, sigint_reaches_child
from tests.videos import THREE_SCENES, make_video

MODEL = "random:blip-tiny"
# Quick to notice an outage and to come back, so the tests wait seconds, not minutes.
FAST = ReaderOptions(open_timeout_s=5, read_timeout_s=2, backoff_first_s=0.2, backoff_cap_s=1.0)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def captioner(model_cache):
    options = ModelOptions(cache_dir=model_cache, max_new_tokens=3, min_new_tokens=3)
    with create_captioner(MODEL, options) as loaded:
        yield loaded


class Log:
    """Everything sources report, in order, with a way to wait for a condition (no sleeps)."""

    def __init__(self) -> None:
        self.items: list[CaptionEvent | SourceChange] = []
        self.changed = asyncio.Event()

    def add(self, item: CaptionEvent | SourceChange) -> None:
        self.items.append(item)
        self.changed.set()

    async def until(self, check: Callable[[list[CaptionEvent | SourceChange]], bool], timeout: float = 120) -> None:
        async def wait() -> None:
            while not check(self.items):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


def captions(items: list, source: str | None = None) -> list[CaptionEvent]:
    return [i for i in items if isinstance(i, CaptionEvent) and (source is None or i.source == source)]


def changes(items: list, source: str | None = None) -> list[SourceChange]:
    return [i for i in items if isinstance(i, SourceChange) and (source is None or i.source == source)]


async def _with_sources(captioner, texts: list[str], scenario) -> None:
    scheduler = Scheduler(captioner, stream_options=None)
    scheduler.start()
    log = Log()
    sources = [
        LiveSource(parse_source(text), scheduler, Task.caption("short"), on_caption=log.add, on_change=log.add,
                   reader_options=FAST)
        for text in texts
    ]  # fmt: skip
    runs = [asyncio.create_task(source.run()) for source in sources]
    try:
        await scenario(log, sources)
    finally:
        for source in sources:
            source.stop()
        await asyncio.gather(*runs)
        scheduler.close()


def test_an_mjpeg_camera_is_captioned_through_an_outage(captioner):
    port = free_port()
    camera = MjpegCamera(port)

    async def scenario(log: Log, sources: list[LiveSource]) -> None:
        nonlocal camera
        await log.until(lambda items: len(captions(items)) >= 2)
        first = captions(log.items)[0]
        assert first.source == "cam" and first.task == "caption" and first.model == MODEL and first.text
        assert first.frame_age_ms is not None and first.frame_age_ms >= first.inference_ms > 0
        camera.stop()
        await log.until(lambda items: any(c.state is SourceState.DOWN for c in changes(items)))
        before = len(captions(log.items))
        camera = MjpegCamera(port)  # the camera comes back on the same address
        await log.until(lambda items: [c.state for c in changes(items)][-1] is SourceState.UP)
        await log.until(lambda items: len(captions(items)) >= before + 2)
        states = [c.type for c in changes(log.items)]
        assert states[0] == "source_up" and "source_down" in states and states[-1] == "source_up"
        assert sources[0].reader.stats.reconnects >= 1
        assert sources[0].counters.captioned >= before + 2

    try:
        asyncio.run(_with_sources(captioner, [f"cam={camera.url}"], scenario))
    finally:
        camera.stop()


def test_sources_share_the_model_fairly_and_one_that_is_down_stalls_none(captioner):
    cameras = [MjpegCamera(free_port()), MjpegCamera(free_port())]
    dead = f"dead=http://127.0.0.1:{free_port()}/mjpeg"

    def enough(items: list) -> bool:
        return all(len(captions(items, name)) >= 3 for name in ("a", "b")) and len(changes(items, "dead")) >= 2

    async def scenario(log: Log, sources: list[LiveSource]) -> None:
        await log.until(enough)
        assert captions(log.items, "dead") == []
        assert {c.reason for c in changes(log.items, "dead")} == {"refused"}

    try:
        asyncio.run(_with_sources(captioner, [f"a={cameras[0].url}", f"b={cameras[1].url}", dead], scenario))
    finally:
        for camera in cameras:
            camera.stop()


def _read_until(reader: SourceReader, events: queue.Queue, done: Callable[[list[SourceChange]], bool]) -> list:
    seen: list[SourceChange] = []
    while not done(seen):
        seen.append(events.get(timeout=60))
    return seen


def test_an_unreachable_port_backs_off_doubling_without_a_busy_loop():
    events: queue.Queue[SourceChange] = queue.Queue()
    options = ReaderOptions(backoff_first_s=0.05, backoff_cap_s=0.4)
    reader = SourceReader(parse_source(f"http://127.0.0.1:{free_port()}/x"), on_change=events.put, options=options)
    reader.start()
    try:
        seen = _read_until(reader, events, lambda seen: len(seen) >= 5)
    finally:
        reader.stop()
    assert {change.reason for change in seen} == {"refused"}
    assert "connection refused" in (seen[0].error or "")
    for change, base in zip(seen, [0.05, 0.1, 0.2, 0.4, 0.4], strict=True):
        assert change.retry_in_s is not None and base * 0.79 <= change.retry_in_s <= base * 1.21
    # One connection attempt per wait: the reader sleeps between tries instead of spinning.
    assert reader.stats.reconnects <= len(seen)


def test_wrong_credentials_are_their_own_error_and_never_shown():
    camera = MjpegCamera(free_port(), user="admin", password="right-pass")
    events: queue.Queue[SourceChange] = queue.Queue()
    url = f"http://admin:wrong-pass@127.0.0.1:{camera.port}/mjpeg?token=tok-s3cret"
    reader = SourceReader(parse_source(url), on_change=events.put, options=FAST)
    reader.start()
    try:
        (down,) = _read_until(reader, events, lambda seen: len(seen) >= 1)
    finally:
        reader.stop()
        camera.stop()
    assert down.reason == "unauthorized"
    assert "refused the credentials" in (down.error or "") and "check the user name and password" in (down.error or "")
    for secret in ("wrong-pass", "tok-s3cret"):
        assert secret not in (down.error or "") and secret not in (reader.error or "")
    assert "***@127.0.0.1" in (down.error or "")


def test_a_missing_path_is_not_found():
    camera = MjpegCamera(free_port())
    events: queue.Queue[SourceChange] = queue.Queue()
    reader = SourceReader(parse_source(f"http://127.0.0.1:{camera.port}/nope"), on_change=events.put, options=FAST)
    reader.start()
    try:
        (down,) = _read_until(reader, events, lambda seen: len(seen) >= 1)
    finally:
        reader.stop()
        camera.stop()
    assert down.reason == "not_found" and "no stream at this path" in (down.error or "")


def test_a_file_plays_at_its_own_rate_and_loops(tmp_path):
    video = make_video(tmp_path / "clip.mp4", [(THREE_SCENES[0][0], 0.5)], fps=10)  # 5 frames
    events: queue.Queue[SourceChange] = queue.Queue()
    arrived = threading.Semaphore(0)
    reader = SourceReader(
        parse_source(str(video), realtime=True, loop=True), on_change=events.put, on_frame=arrived.release
    )
    reader.start()
    try:
        for _ in range(12):  # more frames than the file has: it started again
            assert arrived.acquire(timeout=30)
        latest = reader.latest()
    finally:
        reader.stop()
    assert latest is not None and latest.seq >= 12
    assert events.get_nowait().state is SourceState.UP


def test_a_file_without_loop_ends(tmp_path):
    video = make_video(tmp_path / "clip.mp4", [(THREE_SCENES[0][0], 0.3)], fps=10)
    events: queue.Queue[SourceChange] = queue.Queue()
    reader = SourceReader(parse_source(str(video), realtime=True), on_change=events.put)
    reader.start()
    seen = _read_until(reader, events, lambda seen: bool(seen) and seen[-1].state is SourceState.ENDED)
    assert [change.type for change in seen] == ["source_up", "source_down"]
    assert reader.stats.frames_read == 3


# --- a real RTSP server and the real `camcap watch` ----------------------------------------------


class Watch:
    """`camcap watch` as a subprocess, its stdout and stderr lines gathered as they come."""

    def __init__(self, args: list[str], env: dict[str, str], model: str = MODEL) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "camcap", "watch", *args, "--model", model],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=sigint_reaches_child(),  # Ctrl+C must reach it, even from a background job
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        for name, pipe in (("out", self.process.stdout), ("err", self.process.stderr)):
            threading.Thread(target=self._pump, args=(name, pipe), daemon=True).start()

    def _pump(self, name: str, pipe) -> None:
        for line in pipe:
            self.lines.put((name, line.rstrip("\n")))

    def until(self, check: Callable[[], bool], timeout: float = 180) -> None:
        while not check():
            name, line = self.lines.get(timeout=timeout)
            (self.out if name == "out" else self.err).append(line)

    def events(self) -> list[dict]:
        return [json.loads(line[len("camcap: ") :]) for line in self.err if line.startswith("camcap: {")]

    def captions(self) -> list[dict]:
        return [json.loads(line) for line in self.out]

    def finish(self, timeout: float = 240) -> int:
        code = self.process.wait(timeout)
        self.until(lambda: self.lines.empty(), timeout=5)
        return code


@pytest.fixture
def watch_env(subprocess_env) -> dict[str, str]:
    return {**subprocess_env, "CAMCAP_MIN_NEW_TOKENS": "3", "CAMCAP_MAX_NEW_TOKENS": "3"}


def test_watch_captions_an_rtsp_camera_and_reconnects_after_it_restarts(watch_env):
    port = free_port()
    camera = RtspCamera(port)
    watch = Watch([f"door={camera.url()}", "--duration", "600"], watch_env)
    try:
        watch.until(lambda: len(watch.captions()) >= 1)
        row = watch.captions()[0]
        assert set(row) == {"at", "source", "text", "task", "model", "frame_age_ms", "inference_ms"}
        assert (row["source"], row["task"], row["model"]) == ("door", "caption", MODEL)
        assert row["frame_age_ms"] >= row["inference_ms"] > 0 and row["at"].endswith("+00:00")
        camera.kill()
        watch.until(lambda: any(event["type"] == "source_down" for event in watch.events()))
        before = len(watch.captions())
        camera = RtspCamera(port)
        watch.until(lambda: [event["type"] for event in watch.events()][-1] == "source_up")
        watch.until(lambda: len(watch.captions()) > before)
    finally:
        watch.process.terminate()
        camera.kill()
    types = [event["type"] for event in watch.events()]
    assert types[0] == "source_up" and "source_down" in types and types[-1] == "source_up"


def test_watch_says_the_rtsp_credentials_are_wrong_without_showing_them(watch_env, tmp_path):
    camera = RtspCamera(free_port(), user="admin", password="right-pass")
    try:
        watch = Watch([camera.url("admin:wr0ng-pass@"), "--duration", "4", "--format", "vtt"], watch_env)
        assert watch.finish() == 0
    finally:
        camera.kill()
    down = [event for event in watch.events() if event["type"] == "source_down"]
    assert down and down[0]["reason"] == "unauthorized"
    assert "refused the credentials" in down[0]["error"] and "rtsp://***@127.0.0.1" in down[0]["error"]
    everything = "\n".join(watch.out + watch.err)
    assert "wr0ng-pass" not in everything
    assert watch.out[0] == "WEBVTT"


def test_watch_stops_after_max_captions_with_subtitles(watch_env, tmp_path):
    video = make_video(tmp_path / "demo.mp4", THREE_SCENES)
    out = tmp_path / "live.srt"
    watch = Watch([str(video), "--realtime", "--loop", "--max-captions", "2", "-o", str(out)], watch_env)
    assert watch.finish() == 0
    import srt

    cues = list(srt.parse(out.read_text()))
    assert 1 <= len(cues) <= 2 and all(cue.end > cue.start for cue in cues)
    assert Path(out).read_text().startswith("1\n")


# Run in a child: the failure this guards against is the process dying inside libswscale.
_CONVERT_ONE_FRAME_FROM_FOUR_THREADS = """
import threading
import av
import numpy as np
from camcap.sources.convert import frame_to_image

pixels = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
sizes = {}

def convert(short):
    for _ in range(300):
        sizes[short] = frame_to_image(frame, short).size

threads = [threading.Thread(target=convert, args=(short,)) for short in (96, 720, 384, 720)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted(sizes.items()))
"""


def test_one_frame_converted_by_several_threads_at_once_is_safe():
    # A source's newest frame is converted at the model's size by the caption loop and at full size
    # by a snapshot request, at the same time. PyAV caches one swscale context on the frame, so
    # sharing it crashed the server (segfault in libswscale, seen in CI); each call has its own now.
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT_ONE_FRAME_FROM_FOUR_THREADS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "[(96, (171, 96)), (384, (683, 384)), (720, (1280, 720))]"
