"""The webhook sink against a real receiver: signed JSON, retries with backoff, a bounded queue
that never blocks (drops counted), and a secret that never shows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
from datetime import datetime, timezone

from PIL import Image

from camcap.alerts.engine import Alert, AlertEngine
from camcap.alerts.rules import Rule
from camcap.alerts.sinks import WebhookSink
from camcap.alerts.state import Transition
from tests.alert_receivers import silent_receiver, webhook_receiver

SECRET = "s3cret-webhook-key"


def alert(state: Transition = Transition.TRIGGERED, **extra: object) -> Alert:
    at = datetime(2026, 11, 27, 20, 0, tzinfo=timezone.utc)
    return Alert("red", "door", state, at, **extra)  # type: ignore[arg-type]


def test_each_alert_is_posted_as_json_signed_with_hmac_sha256(caplog):
    caplog.set_level(logging.DEBUG)
    with webhook_receiver() as hook:
        sink = WebhookSink(hook.url, secret=SECRET.encode(), snapshot=True)
        try:
            sink.alert(alert(answer="yes", snapshot=Image.new("RGB", (32, 24), (200, 30, 30))))
            sink.alert(alert(Transition.CLEARED, caption="a blue square on the right"))
            first, second = hook.wait_for(2)
        finally:
            sink.close()
    for delivery in (first, second):
        expected = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-camcap-signature"] == f"sha256={expected}"
        assert delivery.headers["content-type"] == "application/json"
    body = first.json
    snapshot = Image.open(io.BytesIO(base64.b64decode(body.pop("snapshot"))))
    assert (snapshot.format, snapshot.size) == ("JPEG", (32, 24))
    assert body == {
        "rule": "red",
        "camera": "door",
        "state": "triggered",
        "at": "2026-11-27T20:00:00.000+00:00",
        "answer": "yes",
    }
    assert second.json == {
        "rule": "red", "camera": "door", "state": "cleared", "at": "2026-11-27T20:00:00.000+00:00",
        "caption": "a blue square on the right",
    }  # fmt: skip
    assert sink.counters.sent == 2
    assert SECRET not in caplog.text and SECRET not in repr(sink)
    assert "t0ken-in-url" not in repr(sink)


def test_without_a_secret_there_is_no_signature_and_no_snapshot_unless_asked():
    with webhook_receiver() as hook:
        sink = WebhookSink(hook.url)
        try:
            sink.alert(alert(answer="yes", snapshot=Image.new("RGB", (8, 8))))
            (delivery,) = hook.wait_for(1)
        finally:
            sink.close()
    assert "x-camcap-signature" not in delivery.headers
    assert "snapshot" not in delivery.json


def test_a_receiver_that_is_down_gets_retries_then_the_alert_is_counted_failed(caplog):
    with webhook_receiver(status=503) as hook:
        sink = WebhookSink(hook.url, secret=SECRET.encode(), retries=2, backoff_s=0.01)
        try:
            sink.alert(alert(answer="yes"))
            deliveries = hook.wait_for(3)
            assert sink.join(30)
        finally:
            sink.close()
    assert len(deliveries) == 3  # the first try and two retries, each the same signed body
    assert len({delivery.body for delivery in deliveries}) == 1
    assert (sink.counters.sent, sink.counters.failed) == (0, 1)
    assert "attempt 3 of 3 failed (HTTP 503)" in caplog.text
    assert "t0ken-in-url" not in caplog.text and SECRET not in caplog.text


def test_a_hung_receiver_never_blocks_the_engine_and_what_does_not_fit_is_dropped():
    with silent_receiver() as url:
        sink = WebhookSink(url, timeout_s=30, retries=0, queue_size=4)
        engine = AlertEngine([Rule("any", match="/./", k=1, cooldown_s=0)], [sink])
        try:
            # 200 captions alternate true and false: 200 alerts. The receiver holds the first POST
            # for 30 s, so all but the one in hand and the 4 queued are dropped, and counted.
            for index in range(200):
                engine.caption("door", "a red circle" if index % 2 == 0 else "")
            assert engine.alerts_total == 200
            assert sink.counters.dropped >= 200 - 5
        finally:
            sink.close(timeout=0.1)
