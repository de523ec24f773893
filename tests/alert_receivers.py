"""Real receivers for alert tests: a webhook receiver (http.server on a thread) and a Mosquitto
broker (Debian's `mosquitto`, started as a subprocess on a free loopback port; .ci/run installs it)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.live_server import free_port, stop_process


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Webhook:
    """What a receiver got. `status` is the HTTP status it answers (503: "down, try again")."""

    url: str
    status: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 60) -> list[Delivery]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise AssertionError(f"the webhook got {len(self.deliveries)} POSTs, expected {count}")
            return list(self.deliveries)


@contextmanager
def webhook_receiver(status: int = 200) -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.arrived:
                hook.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                hook.arrived.notify_all()
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=t0ken-in-url"
    hook.status = status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_receiver() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung receiver): its URL."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next((path for path in ("/usr/sbin/mosquitto",) if Path(path).is_file()), None)


@dataclass
class Broker:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}/camcap"


@contextmanager
def mosquitto(folder: Path, port: int | None = None) -> Iterator[Broker]:
    """A Mosquitto broker on 127.0.0.1 (anonymous access, no persistence), stopped at the end."""
    binary = mosquitto_path()
    assert binary is not None, "mosquitto is not installed (apt-get install mosquitto; .ci/run does)"
    port = port or free_port()
    config = folder / f"mosquitto-{port}.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, "mosquitto exited at start"
            assert time.monotonic() < deadline, "mosquitto did not listen within 10 s"
            time.sleep(0.05)
    try:
        yield Broker(port, process)
    finally:
        stop_process(process, timeout=5)


class Subscriber:
    """A paho-mqtt client subscribed to '#' on a broker, keeping every message (retained too)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, str, bool]] = []
        self.changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.subscribed = threading.Event()
        self.client.on_message = self._message
        self.client.on_connect = lambda client, *args: client.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        # Only what is published after the broker acknowledged the subscription is sure to arrive.
        assert self.subscribed.wait(30), "the test's MQTT client could not subscribe"

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.changed:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))
            self.changed.notify_all()

    def until(self, check: Callable[[list[tuple[str, str, bool]]], bool], timeout: float = 60) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: check(self.messages), timeout):
                raise AssertionError(f"MQTT: condition not met within {timeout} s; got {self.messages[-20:]}")

    def payloads(self, topic: str) -> list[str]:
        with self.changed:
            return [payload for name, payload, _ in self.messages if name == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
