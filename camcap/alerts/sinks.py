"""Alerts beyond this process, each sink on its own thread and its own bounded queue.

A receiver that is down or slow must never delay captioning: the engine only offers an item to a
sink's queue (`put_nowait`); when the queue is full the item is dropped and counted
(`camcap_alerts_dropped_total{sink=...}` in /metrics). The webhook sink POSTs each alert as JSON
with a timeout and retries with exponential backoff, signed with HMAC-SHA256 when a secret is set.
The secret is only ever read from the environment or a file, and never logged or shown.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from camcap.alerts.engine import Alert
from camcap.alerts.rules import Rule
from camcap.sources.redact import redact_url

logger = logging.getLogger(__name__)

QUEUE_SIZE = 256
SIGNATURE_HEADER = "X-Camcap-Signature"
_STOP = object()


@dataclass
class SinkCounters:
    """What a sink did, for /metrics. Written by the sink's thread and the loop (ints: atomic enough)."""

    sent: int = 0
    failed: int = 0  # given up after every retry
    dropped: int = 0  # the queue was full: never tried


class QueuedSink:
    """A worker thread draining a bounded queue; subclasses implement `handle(item)`."""

    name = "sink"

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.counters = SinkCounters()
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"camcap-alerts-{self.name}", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def offer(self, item: object) -> bool:
        """Queue `item` without waiting; False (and counted) if the queue is full."""
        if self._closed.is_set():
            return False
        self.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counters.dropped += 1
            return False
        return True

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every queued item is handled (tests, and a clean exit). True if it was."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 2.0) -> None:
        """Stop after the item in hand; what is still queued is dropped (it would only delay exit)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._started:
            with contextlib.suppress(queue.Full):  # the worker sees `_closed` after its current item
                self._queue.put_nowait(_STOP)
            self._thread.join(timeout)

    def handle(self, item: object) -> None:
        raise NotImplementedError

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP or self._closed.is_set():
                    return
                self.handle(item)
            except Exception:
                logger.exception("The %s alert sink failed on an item", self.name)
            finally:
                self._queue.task_done()

    # The AlertSink protocol: only webhooks' alerts by default; MQTT overrides the rest.
    def rules_changed(self, rules: Sequence[Rule]) -> None:
        pass

    def alert(self, alert: Alert) -> None:
        self.offer(alert)

    def caption(self, camera: str, text: str, at: datetime) -> None:
        pass


class WebhookSink(QueuedSink):
    """POST each alert as JSON to `url`; see docs/alerts.md for the body and the signature."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        snapshot: bool = False,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        super().__init__(queue_size)
        self.url = url
        self.shown_url = redact_url(url)  # for logs: a token in the URL stays out of them
        self._secret = secret
        self.snapshot = snapshot
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._client: Any = None

    def __repr__(self) -> str:  # never the secret, never the full URL
        return f"WebhookSink({self.shown_url!r}, signed={self._secret is not None}, snapshot={self.snapshot})"

    def handle(self, item: object) -> None:
        assert isinstance(item, Alert)
        body = json.dumps(self.payload(item), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "camcap"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + sign(self._secret, body)
        if self._post(body, headers):
            self.counters.sent += 1
        else:
            self.counters.failed += 1

    def payload(self, alert: Alert) -> dict[str, Any]:
        record = alert.fields()
        if self.snapshot and alert.snapshot is not None:
            record["snapshot"] = jpeg_base64(alert.snapshot)
        return record

    def _post(self, body: bytes, headers: dict[str, str]) -> bool:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        for attempt in range(self.retries + 1):
            # 0.5 s, 1 s, 2 s, ... capped: a receiver that is down is not hammered.
            if attempt and self._closed.wait(min(30.0, self.backoff_s * 2 ** (attempt - 1))):
                return False
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    logger.warning("Webhook %s refused an alert (%s); not retried.", self.shown_url, problem)
                    return False
            logger.warning(
                "Webhook %s: attempt %d of %d failed (%s).", self.shown_url, attempt + 1, self.retries + 1, problem
            )
        return False

    def close(self, timeout: float = 2.0) -> None:
        super().close(timeout)
        if self._client is not None:
            self._client.close()


def sign(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body`: what `X-Camcap-Signature: sha256=<hex>` carries."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def jpeg_base64(image: Any, quality: int = 85) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
