"""The hysteresis of one rule on one camera: K in a row to trigger or clear, a cooldown between triggers."""

from __future__ import annotations

from camcap.alerts.state import AlertState, Hysteresis, Transition


def run(machine: Hysteresis, answers: str, start: float = 0.0, step: float = 1.0) -> list[tuple[int, Transition]]:
    """Feed 'y'/'n' answers one second apart; the (index, transition) pairs they caused."""
    out = []
    for index, answer in enumerate(answers):
        transition = machine.observe(answer == "y", start + index * step)
        if transition is not None:
            out.append((index, transition))
    return out


def test_it_triggers_after_k_true_answers_in_a_row_and_clears_after_k_false():
    machine = Hysteresis(k=3, cooldown_s=0)
    assert run(machine, "nnyyyyynnnn") == [(4, Transition.TRIGGERED), (9, Transition.CLEARED)]
    assert machine.state is AlertState.CLEAR


def test_a_flicker_shorter_than_k_changes_nothing():
    machine = Hysteresis(k=3, cooldown_s=0)
    assert run(machine, "nyynyynnyyn") == []
    assert machine.state is AlertState.CLEAR
    machine = Hysteresis(k=2, cooldown_s=0)
    assert run(machine, "yyyynyynyy") == [(1, Transition.TRIGGERED)]  # one "no" inside does not clear it


def test_k_of_one_follows_every_answer():
    machine = Hysteresis(k=1, cooldown_s=0)
    assert [t for _, t in run(machine, "ynyn")] == [Transition.TRIGGERED, Transition.CLEARED] * 2


def test_the_cooldown_holds_the_next_trigger_until_it_ends():
    machine = Hysteresis(k=2, cooldown_s=10)
    # Triggered at t=1, cleared at t=3, true again from t=4: the streak completes at t=5 but waits
    # for the cooldown; the first true answer at or after t=11 triggers.
    answers = "yynn" + "y" * 10
    assert run(machine, answers) == [(1, Transition.TRIGGERED), (3, Transition.CLEARED), (11, Transition.TRIGGERED)]


def test_a_streak_broken_during_the_cooldown_starts_again():
    machine = Hysteresis(k=2, cooldown_s=5)
    assert run(machine, "yynnyyn" + "nnn" + "yy") == [
        (1, Transition.TRIGGERED),
        (3, Transition.CLEARED),
        (11, Transition.TRIGGERED),
    ]
