"""The alert engine: rules, their state per camera, and who is told when one changes.

It sees three things, all on the event loop: a question rule's answer for a camera (asker.py),
each caption of a camera (match rules test it; MQTT publishes it), and that a camera's frame
looked unchanged (the answer or caption that describes it stands, so it counts again: a still
scene that shows what a rule looks for triggers it after K frames, as a moving one would). Each
answer steps the (rule, camera) hysteresis; a transition becomes an `Alert`, handed to every
listener (page sockets, `WS /v1/sources/stream`, `camcap watch`) and offered to every sink
(webhook, MQTT), which send it from their own bounded queues (sinks.py): nothing here waits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from camcap.alerts.rules import Rule, is_yes
from camcap.alerts.state import AlertState, Hysteresis, Transition
from camcap.engine.events import FrameCaption, FrameUnchanged, StreamEvent
from camcap.engine.timing import monotonic

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """A rule triggered or cleared on a camera."""

    rule: str
    camera: str
    state: Transition
    at: datetime
    answer: str | None = None  # question rules: the answer that completed the streak
    caption: str | None = None  # match rules: the caption that completed the streak
    # The newest frame the camera gave the model (for --webhook-snapshot); never serialised here.
    snapshot: Image.Image | None = field(default=None, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        """The JSON of the alert, as the webhook, the page and `camcap watch` carry it (no snapshot)."""
        record: dict[str, Any] = {
            "rule": self.rule,
            "camera": self.camera,
            "state": self.state.value,
            "at": self.at.isoformat(timespec="milliseconds"),
        }
        if self.answer is not None:
            record["answer"] = self.answer
        if self.caption is not None:
            record["caption"] = self.caption
        return record


class AlertSink(Protocol):
    """Where alerts (and, for MQTT, captions) go beyond this process. Every method returns at once."""

    name: str

    def rules_changed(self, rules: Sequence[Rule]) -> None: ...

    def alert(self, alert: Alert) -> None: ...

    def caption(self, camera: str, text: str, at: datetime) -> None: ...

    def join(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


Listener = Callable[[Alert], None]


class AlertEngine:
    """Rules and their per-camera state. Call everything from one thread (the event loop)."""

    def __init__(self, rules: Iterable[Rule] = (), sinks: Sequence[AlertSink] = ()) -> None:
        self._rules: dict[str, Rule] = {}
        self._states: dict[tuple[str, str], Hysteresis] = {}
        self._last_answer: dict[tuple[str, str], str] = {}
        self._last_caption: dict[str, str] = {}
        self._last_image: dict[str, Image.Image] = {}
        self._listeners: list[Listener] = []
        self.sinks: list[AlertSink] = list(sinks)
        self.alerts_total = 0
        for rule in rules:
            if rule.name in self._rules:
                raise ValueError(f"Two rules are named {rule.name!r}; rule names must be unique.")
            self._rules[rule.name] = rule
        self._tell_sinks()

    # --- rules ---------------------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules.values())

    def get(self, name: str) -> Rule | None:
        return self._rules.get(name)

    def put(self, rule: Rule) -> None:
        """Create or replace a rule. A replaced rule starts again from clear (its triggered
        cameras are told `cleared`, so no receiver is left holding an alert nobody will end)."""
        self._drop_states(rule.name, "the rule was replaced")
        self._rules[rule.name] = rule
        self._tell_sinks()

    def remove(self, name: str) -> bool:
        if name not in self._rules:
            return False
        self._drop_states(name, "the rule was removed")
        del self._rules[name]
        self._tell_sinks()
        return True

    def set_enabled(self, name: str, enabled: bool) -> Rule | None:
        rule = self._rules.get(name)
        if rule is None:
            return None
        if not enabled:
            self._drop_states(name, "the rule was disabled")
        self._rules[name] = dataclasses.replace(rule, enabled=enabled)
        self._tell_sinks()
        return self._rules[name]

    def states(self, name: str) -> dict[str, str]:
        """Each camera this rule has seen, and whether it is triggered there."""
        return {camera: state.state.value for (rule, camera), state in self._states.items() if rule == name}

    def triggered(self) -> list[tuple[str, str]]:
        """(rule, camera) pairs triggered now."""
        return [key for key, state in self._states.items() if state.state is AlertState.TRIGGERED]

    def questions(self, camera: str) -> list[Rule]:
        """The enabled question rules that watch `camera`."""
        return [rule for rule in self._rules.values() if rule.enabled and rule.question and rule.watches(camera)]

    # --- listeners -----------------------------------------------------------------------------

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(alert)` on every alert; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    # --- what the cameras say ------------------------------------------------------------------

    def frame(self, camera: str, image: Image.Image) -> None:
        """The newest frame `camera` gave the model (the snapshot of its next alert)."""
        self._last_image[camera] = image

    def answer(self, rule_name: str, camera: str, text: str) -> None:
        """A question rule's answer about `camera`'s frame."""
        self._last_answer[(rule_name, camera)] = text
        rule = self._rules.get(rule_name)
        if rule is None or not rule.enabled or rule.question is None or not rule.watches(camera):
            return  # the rule changed while its question was with the model
        self._step(rule, camera, is_yes(text), answer=text)

    def repeat_answer(self, rule_name: str, camera: str) -> None:
        """The frame looked like the one the last answer describes: that answer counts again."""
        text = self._last_answer.get((rule_name, camera))
        if text is not None:
            self.answer(rule_name, camera, text)

    def observe(self, camera: str, event: StreamEvent) -> None:
        """An event of `camera`'s own stream: a caption (match rules, MQTT) or an unchanged frame."""
        if isinstance(event, FrameCaption):
            self.caption(camera, event.caption.text)
        elif isinstance(event, FrameUnchanged):
            self.unchanged(camera)

    def caption(self, camera: str, text: str) -> None:
        """A caption of `camera`: match rules test it, and sinks that publish captions get it."""
        self._last_caption[camera] = text
        at = datetime.now(timezone.utc)
        for sink in self.sinks:
            sink.caption(camera, text, at)
        self._match(camera, text)

    def unchanged(self, camera: str) -> None:
        """`camera`'s frame looked unchanged: its last caption stands, for the match rules."""
        text = self._last_caption.get(camera)
        if text is not None:
            self._match(camera, text)

    def forget(self, camera: str) -> None:
        """A camera that is gone for good (a page closed its stream): drop its state quietly."""
        for key in [key for key in self._states if key[1] == camera]:
            del self._states[key]
        for key in [key for key in self._last_answer if key[1] == camera]:
            del self._last_answer[key]
        self._last_caption.pop(camera, None)
        self._last_image.pop(camera, None)

    def close(self, drain_s: float = 2.0) -> None:
        """Stop the sinks, after giving what they hold up to `drain_s` seconds to go out."""
        for sink in self.sinks:
            sink.join(drain_s)
        for sink in self.sinks:
            sink.close()

    # ---------------------------------------------------------------------------------------------

    def _match(self, camera: str, text: str) -> None:
        for rule in list(self._rules.values()):
            if rule.enabled and rule.match is not None and rule.watches(camera):
                self._step(rule, camera, rule.matches(text), caption=text)

    def _step(
        self, rule: Rule, camera: str, truth: bool, *, answer: str | None = None, caption: str | None = None
    ) -> None:
        state = self._states.get((rule.name, camera))
        if state is None:
            state = self._states[(rule.name, camera)] = Hysteresis(rule.k, rule.cooldown_s)
        transition = state.observe(truth, monotonic())
        if transition is not None:
            at = datetime.now(timezone.utc)
            self._emit(Alert(rule.name, camera, transition, at, answer, caption, self._last_image.get(camera)))

    def _drop_states(self, name: str, why: str) -> None:
        for key in [key for key in self._states if key[0] == name]:
            state = self._states.pop(key)
            self._last_answer.pop(key, None)
            if state.state is AlertState.TRIGGERED:
                logger.info("Alert %s on %s cleared: %s.", name, key[1], why)
                self._emit(Alert(name, key[1], Transition.CLEARED, datetime.now(timezone.utc)))

    def _emit(self, alert: Alert) -> None:
        self.alerts_total += 1
        logger.info("Alert %s %s on %s", alert.rule, alert.state.value, alert.camera)
        for listener in list(self._listeners):
            try:
                listener(alert)
            except Exception:  # one broken listener must not keep the alert from the others
                logger.exception("An alert listener failed")
        for sink in self.sinks:
            sink.alert(alert)

    def _tell_sinks(self) -> None:
        rules = self.rules
        for sink in self.sinks:
            sink.rules_changed(rules)
