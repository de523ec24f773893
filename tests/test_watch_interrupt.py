"""Ctrl+C in `camcap watch`: it stops cleanly, writes the open cue, says what it kept and exits
130, leaving a subtitle file that parses whole (a real `camcap watch` subprocess, a real model)."""

from __future__ import annotations

import itertools
import signal

import webvtt

from tests.test_live_sources import Watch, watch_env  # noqa: F401 - watch_env is a fixture
from tests.videos import THREE_SCENES, make_video


def test_ctrl_c_stops_watch_and_keeps_a_whole_subtitle_file(watch_env, tmp_path):  # noqa: F811
    video = make_video(tmp_path / "demo.mp4", THREE_SCENES)
    out = tmp_path / "live.vtt"
    # -v logs each caption on stderr while the cues go to the file: the test waits on those lines.
    watch = Watch([str(video), "--realtime", "--loop", "-o", str(out), "-v"], watch_env)
    try:
        watch.until(lambda: sum("camcap.cli: Caption " in line for line in watch.err) >= 3)
        watch.process.send_signal(signal.SIGINT)
        code = watch.finish(timeout=120)
    finally:
        watch.process.kill()
    assert code == 130, "\n".join(watch.err)
    captions = sum("camcap.cli: Caption " in line for line in watch.err)
    cues = list(webvtt.read(str(out)))
    kept = [line for line in watch.err if line.startswith("camcap: interrupted: kept")]
    assert kept == [f"camcap: interrupted: kept {captions} caption(s) as {len(cues)} cue(s) in {out}."], watch.err
    # The cue that was still open (its caption not yet followed by a different one) was written too:
    # the cues cover the watch from the first caption to the stop, without gaps.
    assert 1 <= len(cues) <= captions
    for before, after in itertools.pairwise(cues):
        assert before.end == after.start
    assert cues[-1].end > cues[-1].start  # HH:MM:SS.mmm: compared as text ("_in_seconds" drops the fraction)
    assert {path.name for path in tmp_path.iterdir()} == {"demo.mp4", "live.vtt"}  # no temporary file left
