"""Alerts end to end: `camcap watch --realtime` plays a generated clip of drawn scenes to the real
`demo:shapes` model, with rules from a TOML file, a signed webhook, a hung webhook and a real
Mosquitto broker, all started by the test.

The clip: a blue square (6 s), a red circle (6 s), a blue square (4 s), ONE frame of the red
circle (a flicker shorter than K = 2), a blue square (3 s). A rule that is true while the red
circle shows must trigger once and clear once; the flicker must trigger nothing: a frame is looked
at once at most, so one frame gives one true answer at most. Still scenes are cheap: a frame that
did not change is answered `unchanged` and its caption counts again, so K frames need not mean K
model passes.

Two rules watch the same clip: a `match` rule on the caption's colour word, and the question
"is there a red circle?" that the model answers beside each caption (docs/demo-model.md: yes/no
99 % right on fresh scenes; these scenes are large and plain).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from camcap.models.demo.scenes import SceneSpec, ShapeSpec, draw_scene
from tests.alert_receivers import Subscriber, mosquitto, mosquitto_path, silent_receiver, webhook_receiver

SIZE = (160, 120)
# Two frames a second: the one-frame flicker below then lasts 0.5 s, longer than `camcap watch`
# takes between two looks at a still scene (0.2 s pause after an unchanged frame, plus the work),
# so it is looked at exactly once (a frame is never taken twice). At 10 fps it lasted 0.1 s and
# was seen about half the time.
FPS = 2
BLUE = SceneSpec((ShapeSpec("blue", "square", "right"),))
RED = SceneSpec((ShapeSpec("red", "circle", "left"),))
# The first blue scene is long: the model's first pass in a process is its slowest (warm-up).
CLIP = [(BLUE, 6 * FPS), (RED, 6 * FPS), (BLUE, 4 * FPS), (RED, 1), (BLUE, 3 * FPS)]
SECRET = "e2e-hook-s3cret"
RULES = """\
[[rule]]
name = "red"
match = "red"
k = 2
cooldown_s = 0

[[rule]]
name = "red-circle"
question = "is there a red circle?"
k = 2
cooldown_s = 0
"""
pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="needs Debian's mosquitto (.ci/run installs it)")


def write_clip(path: Path) -> Path:
    """An H.264 clip of CLIP's scenes (frames, not seconds), drawn by the demo model's own scene code."""
    pictures = {id(spec): np.asarray(draw_scene(spec, SIZE)[0].convert("RGB")) for spec, _ in CLIP}
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height = SIZE
    stream.pix_fmt = "yuv420p"
    stream.codec_context.options = {"preset": "ultrafast"}
    index = 0
    for spec, frames in CLIP:
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(pictures[id(spec)], format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
            index += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str]) -> dict[str, Any]:
    """One `camcap watch` over the whole clip, everything attached; what each receiver got."""
    folder = tmp_path_factory.mktemp("alerts")
    clip = write_clip(folder / "scenes.mp4")
    rules = folder / "rules.toml"
    rules.write_text(RULES)
    env = {**subprocess_env, "CAMCAP_WEBHOOK_SECRET": SECRET, "CAMCAP_WEBHOOK_TIMEOUT_S": "30"}
    # A tiny model runs several times faster on one torch thread than on two contended ones (as
    # the one_torch_thread fixture does in-process); on a busy machine, two threads spin for ages.
    env["OMP_NUM_THREADS"] = "1"
    with mosquitto(folder) as broker, webhook_receiver() as hook, silent_receiver() as hung:
        mqtt = Subscriber(broker.port)
        try:
            command = [
                sys.executable, "-m", "camcap", "watch", f"door={clip}", "--realtime",
                "--model", "demo:shapes", "--device", "cpu", "--rules", str(rules),
                "--webhook", hook.url, "--webhook", hung, "--mqtt", broker.url,
            ]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            rows = [json.loads(line) for line in done.stdout.splitlines()]
            alerts = [row for row in rows if "alert" in row]
            hook.wait_for(len(alerts), timeout=30)  # every alert, of both rules
            mqtt.until(lambda messages: any(topic == "camcap/door/red/state" for topic, _, _ in messages))
            return {
                "rows": rows,
                "stderr": done.stderr,
                "deliveries": list(hook.deliveries),
                "mqtt": list(mqtt.messages),
            }
        finally:
            mqtt.close()


def alert_rows(run: dict[str, Any], rule: str) -> list[dict]:
    return [row for row in run["rows"] if row.get("alert") == rule]


def test_a_match_rule_triggers_once_on_the_red_circle_clears_once_after_it_and_ignores_the_flicker(run):
    captions = [row for row in run["rows"] if "text" in row]
    assert any("red" in row["text"] for row in captions), f"the model never saw the red circle: {run['rows']}"
    red = alert_rows(run, "red")
    assert [row["state"] for row in red] == ["triggered", "cleared"], red
    triggered, cleared = red
    assert triggered["source"] == "door" and "red" in triggered["caption"]
    assert "red" not in cleared["caption"]
    # Alert lines sit in time order among the captions: the trigger after a red caption, the clear
    # after a caption without red; and captions went on after the clear (the flicker came later).
    where = run["rows"].index(triggered)
    assert "red" in [row for row in run["rows"][:where] if "text" in row][-1]["text"]
    later = [row for row in run["rows"][run["rows"].index(cleared) :] if "text" in row]
    assert later, "no caption after the clear: the flicker was never looked for"


def test_the_webhook_gets_each_alert_signed_while_a_hung_one_holds_nothing_back(run):
    red = alert_rows(run, "red")
    bodies = [delivery.json for delivery in run["deliveries"] if delivery.json["rule"] == "red"]
    assert [(body["state"], body["camera"]) for body in bodies] == [(row["state"], "door") for row in red]
    for delivery in run["deliveries"]:
        expected = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-camcap-signature"] == f"sha256={expected}"
    # The second webhook never answers (each try waits 30 s): the first one still got every alert
    # at once, and captioning went on at its pace: captions after the first alert kept coming.
    first = run["rows"].index(red[0])
    assert len([row for row in run["rows"][first:] if "text" in row]) >= 3
    assert SECRET not in run["stderr"] and "t0ken-in-url" not in run["stderr"]
    assert all(SECRET not in json.dumps(row) for row in run["rows"])


def test_mqtt_gets_the_captions_the_rule_states_and_discovery(run):
    messages = run["mqtt"]
    states = [payload for topic, payload, _ in messages if topic == "camcap/door/red/state"]
    assert states[-2:] == ["ON", "OFF"] and states.count("ON") == 1
    captions = [payload for topic, payload, _ in messages if topic == "camcap/door/caption"]
    assert captions and any("red" in caption for caption in captions)
    topics = {topic for topic, _, _ in messages}
    assert {
        "homeassistant/sensor/camcap/door_caption/config",
        "homeassistant/binary_sensor/camcap/door_red/config",
        "homeassistant/binary_sensor/camcap/door_red-circle/config",
    } <= topics


def test_a_question_rule_triggers_once_on_the_red_circle_and_clears_once_after_it(run):
    rows = alert_rows(run, "red-circle")
    assert [row["state"] for row in rows] == ["triggered", "cleared"], rows
    assert rows[0]["answer"].startswith("yes") and not rows[1]["answer"].startswith("yes")
