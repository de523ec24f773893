"""Alerts in the server: the rules routes, page sockets' link to the engine, and /metrics.

`AlertHub` holds the app's `AlertEngine` (rules from `--alert` / `--rules`, sinks from
`--webhook` / `--mqtt`) and, once the model is ready, the `QuestionAsker` on its scheduler. Page
streams and live sources report their frames and events to it; it tells page sockets of alerts
on their own stream and `WS /v1/sources/stream` subscribers of alerts on their sources.

Routes (same access rules as every /v1 route): `GET /v1/rules`, `PUT /v1/rules/{name}` (create or
replace), `PATCH /v1/rules/{name}` (`{"enabled": bool}`), `DELETE /v1/rules/{name}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import BaseModel, ValidationError

from camcap.alerts.asker import QuestionAsker
from camcap.alerts.engine import Alert, AlertEngine
from camcap.alerts.rules import Rule, RuleError, check_name
from camcap.engine.events import Frame, StreamEvent
from camcap.engine.scheduler import Scheduler, Stream
from camcap.server.alert_messages import AlertEvent, RuleIn, RuleOut, RulePatch, RulesResponse
from camcap.server.http import ApiError
from camcap.server.messages import ErrorCode, ErrorResponse

logger = logging.getLogger(__name__)
router = APIRouter()

_MAX_BODY = 16 * 1024


class AlertHub:
    """The server's alerts. Everything runs on the event loop."""

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self._asker: QuestionAsker | None = None

    def asker(self, scheduler: Scheduler) -> QuestionAsker:
        if self._asker is None or self._asker.scheduler is not scheduler:
            self._asker = QuestionAsker(self.engine, scheduler)
        return self._asker

    def submitted(self, scheduler: Scheduler, camera: str, frame: Frame) -> None:
        self.asker(scheduler).submitted(camera, frame)

    def stream_event(self, camera: str, event: StreamEvent) -> None:
        self.engine.observe(camera, event)

    def camera_gone(self, camera: str) -> None:
        """A page stream closed: its question streams close and its state is forgotten."""
        if self._asker is not None:
            self._asker.close_camera(camera)
        self.engine.forget(camera)

    def listen(self, listener: Callable[[Alert], None]) -> Callable[[], None]:
        return self.engine.listen(listener)

    def close(self) -> None:
        if self._asker is not None:
            self._asker.close()
        self.engine.close()

    def describe(self, rule: Rule) -> RuleOut:
        return RuleOut(**rule.fields(), states=self.engine.states(rule.name))  # type: ignore[arg-type]


def alert_event(alert: Alert) -> AlertEvent:
    return AlertEvent(**alert.fields())


class PageAlerts:
    """One page socket's link to the alerts: its stream's events go to the engine, and alerts on
    its stream (camera = its stream_id) come back to it."""

    def __init__(self, hub: AlertHub, post: Callable[[Any], None]) -> None:
        self.hub = hub
        self._post = post
        self.camera: str | None = None
        self._scheduler: Scheduler | None = None
        self._stop: Callable[[], None] | None = None

    def sink(self, event: StreamEvent) -> None:
        """The scheduler stream's sink: the page first, then the alerts."""
        self._post(event)
        if self.camera is not None:
            self.hub.stream_event(self.camera, event)

    def attach(self, stream: Stream, scheduler: Scheduler) -> None:
        self.camera, self._scheduler = stream.id, scheduler
        self._stop = self.hub.listen(self._alert)

    def submitted(self, frame: Frame) -> None:
        if self.camera is not None and self._scheduler is not None:
            self.hub.submitted(self._scheduler, self.camera, frame)

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None
        if self.camera is not None:
            self.hub.camera_gone(self.camera)
            self.camera = None

    def _alert(self, alert: Alert) -> None:
        if alert.camera == self.camera:
            self._post(alert_event(alert))


class AlertCollector(Collector):
    """`camcap_alerts_total{state}` and, per sink kind, sent / failed / dropped (queue full)."""

    def __init__(self, hub: AlertHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sent = CounterMetricFamily("camcap_alerts_sent", "Alert messages a sink delivered.", labels=["sink"])
        failed = CounterMetricFamily(
            "camcap_alerts_failed", "Alert messages a sink gave up on after its retries.", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "camcap_alerts_dropped", "Alert messages dropped because the sink's queue was full.", labels=["sink"]
        )
        totals: dict[str, list[int]] = {}
        for sink in self.hub.engine.sinks:
            counters = getattr(sink, "counters", None)
            if counters is None:
                continue
            numbers = totals.setdefault(sink.name, [0, 0, 0])
            numbers[0] += counters.sent
            numbers[1] += counters.failed
            numbers[2] += counters.dropped
        for name, (ok, bad, lost) in sorted(totals.items()):
            sent.add_metric([name], ok)
            failed.add_metric([name], bad)
            dropped.add_metric([name], lost)
        alerts = CounterMetricFamily("camcap_alerts", "Alerts (triggered or cleared) on any camera.")
        alerts.add_metric([], self.hub.engine.alerts_total)
        triggered = GaugeMetricFamily("camcap_alerts_triggered", "(rule, camera) pairs triggered now.")
        triggered.add_metric([], len(self.hub.engine.triggered()))
        yield from (alerts, triggered, sent, failed, dropped)


def install(hub: AlertHub, registry: CollectorRegistry) -> None:
    registry.register(AlertCollector(hub))


# --- routes ------------------------------------------------------------------------------------


def _hub(request: Request) -> AlertHub:
    hub: AlertHub = request.app.state.alerts
    return hub


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _read_body(request: Request, model: type[BaseModel], example: str) -> Any:
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise ApiError(422, ErrorCode.INVALID_RULE, f"The body is {len(body)} bytes; a rule is at most {_MAX_BODY}.")
    try:
        return model.model_validate(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(422, ErrorCode.INVALID_RULE, f"The body is not JSON ({exc}); expected e.g. {example}.") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {_message(error['msg'])}"
            for error in exc.errors()
        )
        raise ApiError(422, ErrorCode.INVALID_RULE, f"Invalid rule: {problems}. Expected e.g. {example}.") from None


def _message(text: str) -> str:
    return str(text).removeprefix("Value error, ")


def _unknown(hub: AlertHub, name: str) -> ApiError:
    known = ", ".join(rule.name for rule in hub.engine.rules) or "none"
    return ApiError(404, ErrorCode.UNKNOWN_RULE, f"No alert rule is named {name!r}; the rules are: {known}.")


_RULE_EXAMPLE = '{"question": "Is there a person at the door?", "cameras": ["door"], "k": 2}'
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}


@router.get("/v1/rules", response_model=RulesResponse)
async def list_rules(request: Request) -> RulesResponse:
    """The alert rules, each with its state on every camera it has looked at."""
    hub = _hub(request)
    return RulesResponse(rules=[hub.describe(rule) for rule in hub.engine.rules])


@router.put(
    "/v1/rules/{name}",
    response_model=RuleOut,
    responses={422: {"model": ErrorResponse}},
    openapi_extra=_body_schema(RuleIn),
)
async def put_rule(request: Request, name: str) -> RuleOut:
    """Create or replace the rule `name` (a replaced rule starts again from clear)."""
    hub = _hub(request)
    fields = await _read_body(request, RuleIn, _RULE_EXAMPLE)
    try:
        check_name(name)
        rule = Rule.build(name, fields)
    except RuleError as exc:
        raise ApiError(422, ErrorCode.INVALID_RULE, str(exc)) from None
    hub.engine.put(rule)
    return hub.describe(rule)


@router.patch("/v1/rules/{name}", response_model=RuleOut, responses=_ERRORS, openapi_extra=_body_schema(RulePatch))
async def patch_rule(request: Request, name: str) -> RuleOut:
    """Enable or disable the rule `name` (`{"enabled": false}`: it stops asking and clears)."""
    hub = _hub(request)
    if hub.engine.get(name) is None:
        raise _unknown(hub, name)
    patch = await _read_body(request, RulePatch, '{"enabled": false}')
    rule = hub.engine.set_enabled(name, patch.enabled)
    if rule is None:
        raise _unknown(hub, name)
    return hub.describe(rule)


@router.delete("/v1/rules/{name}", status_code=204, response_class=Response, responses={404: {"model": ErrorResponse}})
async def delete_rule(request: Request, name: str) -> Response:
    """Remove the rule `name` (cameras where it was triggered are told `cleared`)."""
    hub = _hub(request)
    if not hub.engine.remove(name):
        raise _unknown(hub, name)
    return Response(status_code=204)
