"""Hysteresis for one (rule, camera): trigger after K true answers in a row, clear after K false.

A flicker shorter than K answers changes nothing, so a rule does not chatter when the model
hesitates over one frame. After a trigger, the next one waits `cooldown_s` from it: a streak
that completes during the cooldown stays pending and triggers on the first true answer after it.
Clearing is never held back (a cleared alert only says the condition ended).
"""

from __future__ import annotations

import enum


class AlertState(str, enum.Enum):
    CLEAR = "clear"
    TRIGGERED = "triggered"


class Transition(str, enum.Enum):
    """What an answer did to the state: the `state` of an alert event."""

    TRIGGERED = "triggered"
    CLEARED = "cleared"


class Hysteresis:
    """The state machine of one rule on one camera. Not thread-safe: one owner (the event loop)."""

    def __init__(self, k: int, cooldown_s: float) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        self.k = k
        self.cooldown_s = cooldown_s
        self.state = AlertState.CLEAR
        self.streak = 0  # answers in a row that disagree with the state
        self._last_trigger: float | None = None

    def observe(self, truth: bool, now: float) -> Transition | None:
        """One answer (`now`: monotonic seconds). Returns the transition it caused, if any."""
        disagrees = truth if self.state is AlertState.CLEAR else not truth
        self.streak = self.streak + 1 if disagrees else 0
        if self.streak < self.k:
            return None
        if self.state is AlertState.CLEAR:
            if self._last_trigger is not None and now - self._last_trigger < self.cooldown_s:
                return None  # cooling down: the streak stands, and the next true answer after it triggers
            self.state, self.streak, self._last_trigger = AlertState.TRIGGERED, 0, now
            return Transition.TRIGGERED
        self.state, self.streak = AlertState.CLEAR, 0
        return Transition.CLEARED
