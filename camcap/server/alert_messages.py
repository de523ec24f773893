"""The wire schema of alerts: `GET/PUT/PATCH/DELETE /v1/rules` and the `alert` event.

The `alert` event reaches every page socket (`/v1/stream`) whose stream a rule watches (a page
stream's camera is its `stream_id`) and every `WS /v1/sources/stream` subscriber of the source
(a source's camera is its name). No secret (webhook secret, MQTT password) is ever in any of these.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from camcap.alerts.rules import RuleFields


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleIn(RuleFields):
    """Body of `PUT /v1/rules/{name}`: a rule without its name (the name is in the path)."""


class RuleOut(_Message):
    name: str
    cameras: list[str]
    question: str | None = None
    match: str | None = None
    k: int
    cooldown_s: float
    enabled: bool
    states: dict[str, Literal["triggered", "clear"]] = Field(
        description="Each camera the rule has looked at, and whether it is triggered there."
    )


class RulesResponse(_Message):
    rules: list[RuleOut]


class RulePatch(_Message):
    """Body of `PATCH /v1/rules/{name}`."""

    enabled: bool


class AlertEvent(_Message):
    """server -> client: a rule triggered or cleared on a camera."""

    type: Literal["alert"] = "alert"
    rule: str
    camera: str = Field(description="A source's name, or a page stream's stream_id.")
    state: Literal["triggered", "cleared"]
    at: str = Field(description="When, ISO 8601, UTC.")
    answer: str | None = Field(None, description="Question rules: the model's answer.")
    caption: str | None = Field(None, description="Match rules: the caption that matched (or stopped matching).")
