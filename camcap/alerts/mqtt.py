"""MQTT: each caption, each rule's state, and Home Assistant discovery (`--mqtt URL`).

Topics (prefix from the URL's path, default `camcap`):
- `<prefix>/<camera>/caption`: each caption's text (QoS 0; a lost caption is replaced by the next).
- `<prefix>/<camera>/<rule>/state`: `ON` / `OFF`, retained (QoS 1): a subscriber that connects
  later learns the state at once.
- `<prefix>/status`: `online`, or `offline` (the broker's last will when camcap goes away).
- `homeassistant/sensor/camcap/<camera>_caption/config`: a sensor per camera, and
  `homeassistant/binary_sensor/camcap/<camera>_<rule>/config`: a binary_sensor per rule x camera,
  retained; a removed rule's configs are emptied, which removes them from Home Assistant.

paho-mqtt's network thread connects and reconnects (1 s doubling to 30 s) for as long as camcap
runs; each (re)connection publishes the discovery configs and states again. Publishing happens on
this sink's own thread from its bounded queue, so a broker that is down never delays captioning.
The password comes only from the environment or a file, and is never logged or shown.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from camcap.alerts.engine import Alert
from camcap.alerts.rules import ALL_CAMERAS, Rule
from camcap.alerts.sinks import QUEUE_SIZE, QueuedSink
from camcap.alerts.state import Transition
from camcap.errors import CamcapError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_PREFIX = "camcap"
DISCOVERY_PREFIX = "homeassistant"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class MqttTarget:
    """A parsed `--mqtt mqtt[s]://[user@]host[:port][/prefix]` (never a password)."""

    host: str
    port: int
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    tls: bool = False

    @property
    def shown(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(url: str) -> MqttTarget:
    """Raises `CamcapError` naming what is wrong (and never echoing a password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise CamcapError("--mqtt expects mqtt://[user@]host[:port][/prefix] (or mqtts:// for TLS).")
    if parts.password is not None:
        raise CamcapError(
            "--mqtt: put no password in the URL (a command line is visible to every user of the machine); "
            "set CAMCAP_MQTT_PASSWORD or use --mqtt-password-file FILE."
        )
    if not parts.hostname:
        raise CamcapError("--mqtt: the URL names no host, e.g. mqtt://broker.local:1883/camcap.")
    try:
        port = parts.port
    except ValueError:
        raise CamcapError("--mqtt: the port is not a number from 1 to 65535.") from None
    tls = parts.scheme == "mqtts"
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if "+" in prefix or "#" in prefix:
        raise CamcapError(f"--mqtt: the topic prefix {prefix!r} may not hold MQTT wildcards (+ or #).")
    username = unquote(parts.username) if parts.username else None
    return MqttTarget(parts.hostname, port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT), prefix, username, tls)


def topic_part(name: str) -> str:
    """A camera or rule name as one topic level and Home Assistant id (no '/', '+', '#', spaces)."""
    return _UNSAFE.sub("_", name) or "_"


class MqttSink(QueuedSink):
    """Publishes captions, rule states and discovery configs to one broker."""

    name = "mqtt"

    def __init__(
        self,
        target: MqttTarget,
        password: str | None = None,
        *,
        discovery_prefix: str = DISCOVERY_PREFIX,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        super().__init__(queue_size)
        self.target = target
        self.discovery_prefix = discovery_prefix
        self._password = password
        self._lock = threading.Lock()  # the sink's thread and paho's network thread share what follows
        self._cameras: set[str] = set()
        self._rules: list[Rule] = []
        self._states: dict[tuple[str, str], str] = {}  # (rule, camera) -> ON / OFF
        self._announced: set[str] = set()  # discovery topics published (so a removed rule can be emptied)
        self._client: Any = None
        self.connected = threading.Event()

    def __repr__(self) -> str:
        return f"MqttSink({self.target.shown!r})"

    # --- the AlertSink protocol (called on the loop; only queue) ----------------------------------

    def rules_changed(self, rules: Sequence[Rule]) -> None:
        self.offer(("rules", list(rules)))

    def alert(self, alert: Alert) -> None:
        self.offer(("alert", alert))

    def caption(self, camera: str, text: str, at: datetime) -> None:
        self.offer(("caption", camera, text))

    # --- on the sink's thread -------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        import paho.mqtt.client as paho

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="", protocol=paho.MQTTv311)
        if self.target.username is not None:
            client.username_pw_set(self.target.username, self._password)
        if self.target.tls:
            client.tls_set()
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        # Asynchronous: a broker that is not there yet is retried by paho's thread, never waited for.
        client.connect_async(self.target.host, self.target.port, keepalive=30)
        client.loop_start()
        super().start()

    def close(self, timeout: float = 2.0) -> None:
        super().close(timeout)
        client, self._client = self._client, None
        if client is not None:
            if self.connected.is_set():
                client.publish(self._status_topic, "offline", qos=1, retain=True).wait_for_publish(1.0)
            client.disconnect()
            client.loop_stop()

    def handle(self, item: object) -> None:
        assert isinstance(item, tuple)
        kind = item[0]
        with self._lock:
            if kind == "caption":
                _, camera, text = item
                self._see_camera(camera)
                self._publish(f"{self.target.prefix}/{topic_part(camera)}/caption", text, qos=0)
            elif kind == "alert":
                alert: Alert = item[1]
                self._see_camera(alert.camera)
                state = "ON" if alert.state is Transition.TRIGGERED else "OFF"
                self._set_state(alert.rule, alert.camera, state)
            elif kind == "rules":
                self._rules = item[1]
                for rule in self._rules:
                    for camera in rule.cameras:
                        if camera != ALL_CAMERAS:
                            self._cameras.add(camera)
                self._announce()

    def _see_camera(self, camera: str) -> None:
        if camera not in self._cameras:
            self._cameras.add(camera)
            self._announce()

    def _set_state(self, rule: str, camera: str, state: str) -> None:
        self._states[(rule, camera)] = state
        self._publish(self._state_topic(rule, camera), state, qos=1, retain=True)

    def _announce(self) -> None:
        """Publish every discovery config (and OFF for a rule x camera never seen), and empty the
        configs of rules that are gone. Holds the lock."""
        wanted: dict[str, str] = {}
        for camera in sorted(self._cameras):
            wanted[self._sensor_topic(camera)] = json.dumps(self._sensor_config(camera))
            for rule in self._rules:
                if rule.watches(camera):
                    wanted[self._binary_topic(rule.name, camera)] = json.dumps(self._binary_config(rule, camera))
                    if (rule.name, camera) not in self._states:
                        self._set_state(rule.name, camera, "OFF")
        for topic in sorted(self._announced - set(wanted)):
            self._publish(topic, "", qos=1, retain=True)  # an empty config removes the entity
        for topic, config in wanted.items():
            self._publish(topic, config, qos=1, retain=True)
        self._announced = set(wanted)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            logger.warning("MQTT broker %s refused the connection: %s", self.target.shown, reason_code)
            return
        logger.info("MQTT: connected to %s", self.target.shown)
        self.connected.set()
        client.publish(self._status_topic, "online", qos=1, retain=True)
        with self._lock:  # the broker may have lost retained messages: say everything again
            self._announced = set()
            self._announce()
            for (rule, camera), state in self._states.items():
                self._publish(self._state_topic(rule, camera), state, qos=1, retain=True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if self.connected.is_set():
            logger.warning("MQTT: lost %s (%s); reconnecting.", self.target.shown, reason_code)
        self.connected.clear()

    def _publish(self, topic: str, payload: str, *, qos: int, retain: bool = False) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            # Nothing is queued inside paho while the broker is away: states and discovery are
            # published again on reconnection, and a lost caption is replaced by the next.
            if qos == 0:
                self.counters.dropped += 1
            return
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == 0:
            self.counters.sent += 1
        else:
            self.counters.failed += 1

    # --- names and configs ----------------------------------------------------------------------

    @property
    def _status_topic(self) -> str:
        return f"{self.target.prefix}/status"

    def _state_topic(self, rule: str, camera: str) -> str:
        return f"{self.target.prefix}/{topic_part(camera)}/{topic_part(rule)}/state"

    def _sensor_topic(self, camera: str) -> str:
        return f"{self.discovery_prefix}/sensor/camcap/{topic_part(camera)}_caption/config"

    def _binary_topic(self, rule: str, camera: str) -> str:
        return f"{self.discovery_prefix}/binary_sensor/camcap/{topic_part(camera)}_{topic_part(rule)}/config"

    def _device(self, camera: str) -> dict[str, Any]:
        return {"identifiers": [f"camcap_{topic_part(camera)}"], "name": f"camcap {camera}", "manufacturer": "camcap"}

    def _sensor_config(self, camera: str) -> dict[str, Any]:
        return {
            "name": "Caption",
            "unique_id": f"camcap_{topic_part(camera)}_caption",
            "state_topic": f"{self.target.prefix}/{topic_part(camera)}/caption",
            "availability_topic": self._status_topic,
            "icon": "mdi:cctv",
            "device": self._device(camera),
        }

    def _binary_config(self, rule: Rule, camera: str) -> dict[str, Any]:
        return {
            "name": rule.name,
            "unique_id": f"camcap_{topic_part(camera)}_{topic_part(rule.name)}",
            "state_topic": self._state_topic(rule.name, camera),
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": self._status_topic,
            "device": self._device(camera),
        }
