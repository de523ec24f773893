"""The captions of videos and live sources name the scene on screen at their time, with
`demo:shapes`: a clip whose scenes change at known times, captioned as a file (`camcap caption`)
and watched live from an MJPEG camera (`camcap watch`). What a caption must get right is decided
by tests/content.py (`named` and `shown`), nowhere else."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from camcap.cli import main
from camcap.models.demo.scenes import SceneSpec, ShapeSpec, Truth, draw_scene
from tests.cameras import MjpegCamera
from tests.content import named, shown
from tests.live_server import free_port
from tests.test_live_sources import Watch
from tests.videos import make_video

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

MODEL = "demo:shapes"
SIZE = (320, 240)
SECONDS_EACH = 2.0
# Three scenes that differ in colour and side, so a caption of the wrong scene cannot pass.
SCENES = [
    SceneSpec((ShapeSpec("red", "circle", "left", size=0.4),)),
    SceneSpec((ShapeSpec("blue", "square", "right", size=0.4),)),
    SceneSpec((ShapeSpec("green", "triangle", "centre", size=0.4),)),
]
DRAWN = [draw_scene(spec, SIZE) for spec in SCENES]
TRUTHS: list[Truth] = [truth for _, truth in DRAWN]


def scene_video(path: Path, fps: int = 10) -> Path:
    """An H.264 clip of SCENES, SECONDS_EACH each: scene i is on screen from i * SECONDS_EACH."""
    pictures = [(np.asarray(image.convert("RGB")), SECONDS_EACH) for image, _ in DRAWN]
    return make_video(path, pictures, fps=fps, size=SIZE)


def scene_at(t: float) -> set[tuple[str, ...]]:
    return shown(TRUTHS[min(int(t // SECONDS_EACH), len(TRUTHS) - 1)])


def test_caption_video_names_the_scene_on_screen_at_each_cues_time(subprocess_env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CAMCAP_CACHE_DIR", subprocess_env["CAMCAP_CACHE_DIR"])
    video = scene_video(tmp_path / "scenes.mp4")
    assert main(["caption", str(video), "--model", MODEL, "--every", "0.5", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["t_start"] == 0.0 and rows[-1]["t_end"] == pytest.approx(len(SCENES) * SECONDS_EACH, abs=0.11)
    for row in rows:
        # A cue is one caption held from its frame's time to the next different caption's: the
        # scene must be the one named, at its start and until its end (no cue straddles a change).
        assert named(row["text"]) == scene_at(row["t_start"]) == scene_at(row["t_end"] - 0.01), row
    assert [row["t_start"] for row in rows if row["t_start"] % SECONDS_EACH == 0] == [0.0, 2.0, 4.0]


def test_watch_names_the_scene_a_live_camera_showed_when_its_frame_arrived(subprocess_env):
    jpegs = []
    for image, _ in DRAWN:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    camera = MjpegCamera(free_port(), frames=jpegs, seconds_each=SECONDS_EACH)
    # --change-threshold 0: every frame the model takes is captioned, also while the scene holds.
    # A duration, not a caption count: a fast model makes ten captions before the first change.
    duration = len(SCENES) * SECONDS_EACH + 2
    args = [f"cam={camera.url}", "--duration", str(duration), "--change-threshold", "0"]
    watch = Watch(args, subprocess_env, model=MODEL)
    try:
        assert watch.finish(timeout=400) == 0, "\n".join(watch.err)
    finally:
        watch.process.kill()
        camera.stop()
    checked: set[int] = set()
    for row in watch.captions():
        # The frame arrived frame_age_ms before its caption: which picture was the camera sending then?
        arrived = datetime.fromisoformat(row["at"]).timestamp() - row["frame_age_ms"] / 1000
        started = [(t, which) for t, which in camera.shown if t <= arrived]
        assert started, row
        since, which = started[-1]
        later = [t for t, _ in camera.shown if t > arrived]
        if arrived - since < 0.3 or (later and later[0] - arrived < 0.3):
            continue  # too near a change to say which picture the frame was
        assert named(row["text"]) == shown(TRUTHS[which]), (row, which)
        checked.add(which)
    assert len(checked) >= 2, (watch.captions(), camera.shown)
