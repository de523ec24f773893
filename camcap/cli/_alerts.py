"""The alert flags `camcap serve` and `camcap watch` share (camcap/alerts/, docs/alerts.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

# argparse dest == Settings field (cli/_settings.py passes them on).
ALERT_FLAGS = ("alerts", "rules", "webhooks", "webhook_secret_file", "webhook_snapshot", "mqtt", "mqtt_password_file")


def add_alert_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("alerts (see docs/alerts.md)")
    group.add_argument(
        "--alert",
        dest="alerts",
        action="append",
        metavar="NAME=QUESTION",
        help='a yes/no question asked of every camera\'s frames, e.g. "person=Is there a person?"; triggers '
        "after 2 yes in a row, clears after 2 no; repeatable",
    )
    group.add_argument("--rules", type=Path, metavar="FILE", help="alert rules from a TOML file of [[rule]] tables")
    group.add_argument(
        "--webhook",
        dest="webhooks",
        action="append",
        metavar="URL",
        help="POST each alert as JSON to URL (signed with HMAC-SHA256 when CAMCAP_WEBHOOK_SECRET or "
        "--webhook-secret-file is set); repeatable",
    )
    group.add_argument("--webhook-secret-file", type=Path, metavar="FILE", help="the webhook signing secret, from FILE")
    group.add_argument(
        "--webhook-snapshot",
        action="store_const",
        const=True,
        help='webhook bodies carry the camera\'s frame as base64 JPEG ("snapshot")',
    )
    group.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish captions, rule states and Home Assistant discovery to mqtt://[user@]host[:port][/prefix] "
        "(password: CAMCAP_MQTT_PASSWORD or --mqtt-password-file)",
    )
    group.add_argument("--mqtt-password-file", type=Path, metavar="FILE", help="the MQTT password, from FILE")
