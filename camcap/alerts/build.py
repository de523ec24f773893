"""Settings into an `AlertEngine`: the rules of `--alert` and `--rules`, the webhook and MQTT sinks.

Everything that can be wrong is found here, before the model loads: a bad rule (its file and
line), a secret file that cannot be read, an MQTT URL with a password in it.
"""

from __future__ import annotations

from pathlib import Path

from camcap.alerts.engine import AlertEngine, AlertSink
from camcap.alerts.rules import Rule, RuleError, load_rules, parse_alert
from camcap.config import Settings
from camcap.errors import CamcapError


def rules_from_settings(settings: Settings) -> list[Rule]:
    rules = [parse_alert(text) for text in settings.alerts]
    if settings.rules is not None:
        rules += load_rules(settings.rules)
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise RuleError(f"Two rules are named {rule.name!r} (--alert and --rules together); rename one.")
        seen.add(rule.name)
    return rules


def sinks_from_settings(settings: Settings) -> list[AlertSink]:
    from camcap.alerts.sinks import WebhookSink

    sinks: list[AlertSink] = []
    secret = _secret(settings.webhook_secret, settings.webhook_secret_file, "webhook secret", "CAMCAP_WEBHOOK_SECRET")
    for url in settings.webhooks:
        text = url.get_secret_value()
        if not text.startswith(("http://", "https://")):
            raise CamcapError("--webhook expects an http:// or https:// URL.")
        sinks.append(
            WebhookSink(
                text,
                secret=None if secret is None else secret.encode(),
                snapshot=settings.webhook_snapshot,
                timeout_s=settings.webhook_timeout_s,
                retries=settings.webhook_retries,
            )
        )
    if settings.mqtt is not None:
        from camcap.alerts.mqtt import MqttSink, parse_mqtt_url

        target = parse_mqtt_url(settings.mqtt)
        password = _secret(settings.mqtt_password, settings.mqtt_password_file, "MQTT password", "CAMCAP_MQTT_PASSWORD")
        if password is not None and target.username is None:
            raise CamcapError("An MQTT password is set but --mqtt names no user: write mqtt://USER@host:port.")
        sinks.append(MqttSink(target, password))
    return sinks


def engine_from_settings(settings: Settings) -> AlertEngine:
    """The process's alert engine. Raises `CamcapError` (RuleError) for anything unusable."""
    rules = rules_from_settings(settings)
    return AlertEngine(rules, sinks_from_settings(settings))


def _secret(value: object, path: Path | None, what: str, variable: str) -> str | None:
    if value is not None and path is not None:
        raise CamcapError(f"The {what} is set twice ({variable} and a file); keep one.")
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CamcapError(f"The {what} file {path} cannot be read ({exc.strerror}).") from None
        if not text:
            raise CamcapError(f"The {what} file {path} is empty.")
        return text
    if value is None:
        return None
    secret = value.get_secret_value()  # type: ignore[attr-defined]
    return str(secret) or None
