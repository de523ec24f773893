"""The batching window's rules (camcap.engine.batching), with explicit clocks: no timing involved."""

from __future__ import annotations

import pytest

from camcap.engine.batching import (
    DEFAULT_BATCH_WINDOW_MS,
    QUIET_AFTER_BATCHES,
    QUIET_AFTER_MIN_S,
    WINDOW_SHARE,
    BatchWindow,
)


def delay(window: BatchWindow, *, waiting: int, expected: int, max_batch: int = 8, waited_s: float = 0.0) -> float:
    now = 100.0 + waited_s
    return window.delay(first_waiting_at=100.0, waiting=waiting, expected=expected, max_batch=max_batch, now=now)


def test_an_idle_model_waits_for_the_other_expected_streams_up_to_the_window():
    window = BatchWindow(50)
    assert delay(window, waiting=1, expected=4) == pytest.approx(0.050)
    assert delay(window, waiting=3, expected=4, waited_s=0.030) == pytest.approx(0.020)
    assert delay(window, waiting=1, expected=4, waited_s=0.2) < 0  # waited long enough already


def test_no_wait_once_every_expected_stream_has_a_frame_or_the_batch_is_full():
    window = BatchWindow(50)
    assert delay(window, waiting=4, expected=4) == 0.0
    assert delay(window, waiting=2, expected=4, max_batch=2) == 0.0
    assert delay(window, waiting=1, expected=1) == 0.0  # a lone stream never waits


def test_a_zero_window_turns_batching_waits_off():
    assert delay(BatchWindow(0), waiting=1, expected=8) == 0.0


def test_the_window_never_exceeds_its_share_of_the_models_batch_time():
    window = BatchWindow(50)
    assert window.window_s() == pytest.approx(0.050)  # nothing measured yet: the configured window
    for batch_s in (0.080, 0.040, 0.060, 5.0):  # one slow outlier does not move the median much
        window.observe(batch_s)
    assert window.batch_s == pytest.approx(0.070)
    assert window.window_s() == pytest.approx(WINDOW_SHARE * 0.070)
    assert delay(window, waiting=1, expected=2) == pytest.approx(WINDOW_SHARE * 0.070)

    slow = BatchWindow(50)
    slow.observe(1.4)  # a CPU caption: the configured window is already far below the share
    assert slow.window_s() == pytest.approx(0.050)


def test_a_stream_is_waited_for_only_while_it_is_active():
    window = BatchWindow(50)
    assert window.is_active(10.0, now=10.0 + QUIET_AFTER_MIN_S)
    assert not window.is_active(10.0, now=10.0 + QUIET_AFTER_MIN_S + 0.01)

    window.observe(2.0)  # slow batches: a live stream comes back only after one of them
    assert window.quiet_after_s() == pytest.approx(QUIET_AFTER_BATCHES * 2.0)
    assert window.is_active(10.0, now=10.0 + 5.0)


def test_a_negative_window_is_refused():
    with pytest.raises(ValueError, match="batch_window_ms must be >= 0"):
        BatchWindow(-1)


def test_the_servers_default_window_is_the_measured_one():
    from camcap.config import Settings

    assert Settings().batch_window_ms == DEFAULT_BATCH_WINDOW_MS == 50.0
