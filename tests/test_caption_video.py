"""`camcap caption VIDEO...` end to end: a real random-weight model, videos made by the test.

A random-weight model writes the same words for the same picture and different words for different
ones, which is all these tests need: cue times, merging and files. (Captions that name the scene
wait for `demo:shapes`.)
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import srt
import webvtt
from PIL import Image

from camcap.cli import main
from tests.live_server import sigint_reaches_child
from tests.videos import BLUE_BAR, GREEN_CIRCLE, RED_SQUARE, THREE_SCENES, make_video

MODEL = "random:blip-tiny"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cli(model_cache, monkeypatch):
    monkeypatch.setenv("CAMCAP_CACHE_DIR", str(model_cache))
    monkeypatch.setenv("CAMCAP_MIN_NEW_TOKENS", "6")
    monkeypatch.setenv("CAMCAP_MAX_NEW_TOKENS", "6")

    def run(*args: str) -> int:
        return main(["caption", *args, "--model", MODEL])

    return run


def test_a_video_becomes_one_cue_per_scene_from_its_timestamps(cli, capsys, tmp_path):
    video = make_video(tmp_path / "talk.mp4", THREE_SCENES)
    assert cli(str(video), "--every", "1", "--format", "jsonl") == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    # Six captions, two per scene; identical neighbours merge: one cue per scene.
    assert [(row["t_start"], row["t_end"]) for row in rows] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert len({row["text"] for row in rows}) == 3
    assert all(row["task"] == "caption" and row["model"] == MODEL and row["inference_ms"] > 0 for row in rows)
    assert set(rows[0]) == {"t_start", "t_end", "text", "task", "model", "inference_ms"}
    assert "3 cue(s) from 6 caption(s)" in err and "x real time" in err


def test_output_file_format_follows_its_suffix_and_reads_back(cli, tmp_path):
    video = make_video(tmp_path / "talk.mkv", [(RED_SQUARE, 1.5), (GREEN_CIRCLE, 1.5)])
    assert cli(str(video), "-o", str(tmp_path / "talk.vtt")) == 0  # every 2 s by default
    captions = webvtt.read(str(tmp_path / "talk.vtt")).captions
    assert [(c.start, c.end) for c in captions] == [("00:00:00.000", "00:00:02.000"), ("00:00:02.000", "00:00:03.000")]


def test_several_videos_write_one_sidecar_each_into_a_folder(cli, tmp_path):
    first = make_video(tmp_path / "a.mp4", [(RED_SQUARE, 1.0)])
    second = make_video(tmp_path / "b.mov", [(BLUE_BAR, 1.0), (GREEN_CIRCLE, 1.0)])
    out = tmp_path / "subs"
    out.mkdir()
    assert cli(str(first), str(second), "--format", "srt", "--every", "1", "-o", str(out)) == 0
    assert sorted(path.name for path in out.iterdir()) == ["a.srt", "b.srt"]
    assert len(list(srt.parse((out / "a.srt").read_text()))) == 1
    second_cues = list(srt.parse((out / "b.srt").read_text()))
    assert [(s.start.total_seconds(), s.end.total_seconds()) for s in second_cues] == [(0.0, 1.0), (1.0, 2.0)]


def test_on_change_captions_each_scene_change(cli, capsys, tmp_path):
    video = make_video(tmp_path / "c.mp4", [(RED_SQUARE, 1.0), (GREEN_CIRCLE, 2.5), (BLUE_BAR, 1.0)])
    assert cli(str(video), "--on-change", "--every", "30", "--format", "txt") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0] for line in lines] == [
        "[00:00:00.000 --> 00:00:01.000",
        "[00:00:01.000 --> 00:00:03.500",
        "[00:00:03.500 --> 00:00:04.500",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stream"], "--stream is for images"),
        (["--every", "0"], "--every must be a positive number"),
    ],
)
def test_bad_video_flags_are_clear_errors(cli, capsys, tmp_path, extra, message):
    video = make_video(tmp_path / "v.mp4", [(RED_SQUARE, 0.5)])
    assert cli(str(video), *extra) == 2
    assert message in capsys.readouterr().err


def test_images_and_videos_are_not_mixed(cli, capsys, tmp_path):
    video = make_video(tmp_path / "v.mp4", [(RED_SQUARE, 0.5)])
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    assert cli(str(video), str(tmp_path / "a.png")) == 2
    assert "either images or videos" in capsys.readouterr().err


def test_several_videos_to_stdout_ask_for_a_folder(cli, capsys, tmp_path):
    videos = [str(make_video(tmp_path / f"{name}.mp4", [(RED_SQUARE, 0.5)])) for name in "ab"]
    assert cli(*videos) == 2
    assert "-o FOLDER" in capsys.readouterr().err


def test_a_video_that_fails_part_way_leaves_nothing_written(cli, capsys, tmp_path):
    whole = make_video(tmp_path / "whole.mkv", [*THREE_SCENES, *THREE_SCENES], gop=10)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    target = tmp_path / "cut.vtt"
    target.write_text("an older file survives")
    assert cli(str(cut), "--every", "1", "-o", str(target)) == 2
    assert "truncated" in capsys.readouterr().err
    assert target.read_text() == "an older file survives"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut.mkv", "cut.vtt", "whole.mkv"]


def test_ctrl_c_keeps_the_cues_done_and_says_so(subprocess_env, tmp_path):
    # Ten minutes of scenes changing every second, and 200-token captions: far longer than the test
    # waits (with 6 tokens a quiet CI machine captioned a one-minute clip in 0.9 s, before the signal).
    scenes = [(RED_SQUARE, 1.0), (GREEN_CIRCLE, 1.0), (BLUE_BAR, 1.0)] * 200
    video = make_video(tmp_path / "long.mp4", scenes, fps=1, size=(64, 48))
    target = tmp_path / "long.vtt"
    env = {**subprocess_env, "CAMCAP_MIN_NEW_TOKENS": "200", "CAMCAP_MAX_NEW_TOKENS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "camcap", "caption", str(video), "--every", "1", "-o", str(target), "--model", MODEL],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_reaches_child(),  # Ctrl+C must reach it, even from a background job
    )
    try:
        _wait_for_cues(tmp_path, 2, process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted: kept" in err and "Traceback" not in err
    captions = webvtt.read(str(target)).captions
    assert len(captions) >= 2
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".part")] == []


def _wait_for_cues(folder: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Until the temporary file being written holds `count` cues (the model's pace sets the wait)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for part in folder.glob(".long.vtt.*.part"):
            text = part.read_text()
            if text.count("-->") >= count:
                assert len(webvtt.from_buffer(io.StringIO(text)).captions) >= count
                return
        time.sleep(0.1)
    raise AssertionError("no cues were written in time")
