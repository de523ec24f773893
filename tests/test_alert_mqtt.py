"""MQTT against a real Mosquitto broker started by the test: captions, retained rule states, Home
Assistant discovery, a removed rule's entities emptied, and reconnection after the broker restarts."""

from __future__ import annotations

import json
import os

import pytest

from camcap.alerts.engine import AlertEngine
from camcap.alerts.mqtt import MqttSink, parse_mqtt_url
from camcap.alerts.rules import Rule
from camcap.errors import CamcapError
from tests.alert_receivers import Subscriber, mosquitto, mosquitto_path

# CI installs mosquitto and sets CAMCAP_REQUIRE_MQTT=1: there, a missing broker fails instead of skipping.
pytestmark = pytest.mark.skipif(
    mosquitto_path() is None and os.environ.get("CAMCAP_REQUIRE_MQTT") != "1",
    reason="needs Debian's mosquitto (.ci/run installs it)",
)

RED = Rule("red", match="red", k=1, cooldown_s=0)
SENSOR = "homeassistant/sensor/camcap/door_caption/config"
BINARY = "homeassistant/binary_sensor/camcap/door_red/config"
STATE = "camcap/door/red/state"


def test_captions_states_and_discovery_reach_the_broker_and_stay_retained(tmp_path):
    with mosquitto(tmp_path) as broker:
        sink = MqttSink(parse_mqtt_url(broker.url))
        engine = AlertEngine([RED], [sink])
        watcher = Subscriber(broker.port)
        try:
            assert sink.connected.wait(30), "camcap never connected to the broker"
            engine.caption("door", "a red circle on the left")
            engine.caption("door", "a blue square on the right")
            watcher.until(lambda messages: [p for t, p, _ in messages if t == STATE][-2:] == ["ON", "OFF"])
            assert "a red circle on the left" in watcher.payloads("camcap/door/caption")
            sensor = json.loads(watcher.payloads(SENSOR)[-1])
            assert sensor["state_topic"] == "camcap/door/caption" and sensor["unique_id"] == "camcap_door_caption"
            binary = json.loads(watcher.payloads(BINARY)[-1])
            assert (binary["state_topic"], binary["payload_on"], binary["payload_off"]) == (STATE, "ON", "OFF")
            assert binary["availability_topic"] == "camcap/status"
            assert "online" in watcher.payloads("camcap/status")

            # A client that connects later gets the configs and the state at once: they are retained.
            late = Subscriber(broker.port)
            try:
                late.until(lambda messages: {(t, r) for t, _, r in messages} >= {(SENSOR, True), (BINARY, True)})
                late.until(lambda messages: (STATE, "OFF", True) in messages)
            finally:
                late.close()

            # A removed rule's entity is removed from Home Assistant (an empty retained config).
            engine.remove("red")
            watcher.until(lambda messages: (BINARY, "", True) in messages or (BINARY, "", False) in messages)
        finally:
            watcher.close()
            engine.close()


def test_the_sink_reconnects_after_the_broker_restarts_and_says_everything_again(tmp_path):
    with mosquitto(tmp_path) as broker:
        port = broker.port
        sink = MqttSink(parse_mqtt_url(broker.url))
        engine = AlertEngine([RED], [sink])
        assert sink.connected.wait(30)
        engine.caption("door", "a red circle")
        assert sink.join(10)
    try:
        # The broker is gone (and its retained messages with it): captions go on, nothing waits.
        for _ in range(50):
            engine.caption("door", "a red circle")
        with mosquitto(tmp_path, port=port) as broker:
            watcher = Subscriber(broker.port)
            try:
                # paho reconnects (1 s doubling); on reconnection discovery and states are published again.
                watcher.until(lambda messages: (STATE, "ON") in [(t, p) for t, p, _ in messages], timeout=90)
                watcher.until(lambda messages: any(t == BINARY for t, _, _ in messages))
                engine.caption("door", "a red circle, again")
                watcher.until(lambda messages: "a red circle, again" in [p for t, p, _ in messages])
            finally:
                watcher.close()
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mqtt://user:hunter2@broker:1883", "no password in the URL"),
        ("http://broker", "mqtt://"),
        ("mqtt://broker:1883/a/+", "wildcards"),
        ("mqtt://:1883", "no host"),
    ],
)
def test_a_bad_mqtt_url_says_what_to_do_and_never_echoes_a_password(url, words):
    with pytest.raises(CamcapError, match=words) as caught:
        parse_mqtt_url(url)
    assert "hunter2" not in str(caught.value)


def test_a_good_mqtt_url_has_defaults():
    target = parse_mqtt_url("mqtt://camcap@broker.local")
    assert (target.host, target.port, target.prefix, target.username, target.tls) == (
        "broker.local", 1883, "camcap", "camcap", False,
    )  # fmt: skip
    assert parse_mqtt_url("mqtts://broker/home/cams").port == 8883
    assert parse_mqtt_url("mqtts://broker/home/cams").prefix == "home/cams"
