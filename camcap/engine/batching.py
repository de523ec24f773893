"""The batching window: how long an idle model waits for other streams' frames to share a batch.

Why wait at all: in live mode each stream sends its next frame when its caption arrives, so
after a shared batch the streams' frames come back within a few milliseconds of each other. The
first one to arrive would start a batch of one and the streams would drift apart, each then
waiting for the others' batches. A short wait lets them share the model again. Measured on a
2-core CPU with BLIP base (docs/benchmarks.md, run E): a 50 ms window gave 4 streams 1.15 x and
8 streams 1.21 x one stream's captions per second, +18 % and +15 % over no window, and a lone
stream never waits.

The wait is bounded three ways, so that it can only cost what it can win back:
- it ends as soon as every stream that is expected to send has a frame waiting (or the batch is
  full): streams in live step come back together, and nobody waits out the window;
- a stream counts as expected only while it is *active*: it put a frame in its slot (or was
  opened) within the last `QUIET_AFTER_BATCHES` batch times (at least `QUIET_AFTER_MIN_S`). A
  paused page, or a camera whose frames change gating answers `unchanged`, is not waited for;
- it never exceeds `WINDOW_SHARE` of the model's recent batch time, so that on a fast GPU (tens
  of ms per caption) the window shrinks with the caption it delays. This share is reasoned, not
  yet measured on a GPU: `benchmarks/gpu_bench.sh` measures windows of 0, 20 and 50 ms.
"""

from __future__ import annotations

import statistics
from collections import deque

# The server's default window. On a CPU a caption takes a second or more, so 50 ms is ~4 % of it.
DEFAULT_BATCH_WINDOW_MS = 50.0
# A window never costs a caption more than this share of the model's recent time per batch.
WINDOW_SHARE = 0.25
# A stream that has not put a frame in its slot for this many batch times, and at least this long,
# is not waited for (live streams come back within one batch time and a round trip).
QUIET_AFTER_BATCHES = 3
QUIET_AFTER_MIN_S = 1.0
# Batch times remembered for the estimate; the median of a few ignores one slow outlier.
_RECENT_BATCHES = 8


class BatchWindow:
    """The batching policy of one scheduler. Not thread-safe: the scheduler calls it under its lock."""

    def __init__(self, window_ms: float = DEFAULT_BATCH_WINDOW_MS) -> None:
        if window_ms < 0:
            raise ValueError(f"batch_window_ms must be >= 0, got {window_ms}.")
        self.window_ms = window_ms
        self._recent_s: deque[float] = deque(maxlen=_RECENT_BATCHES)
        # The model's recent time per batch (median, seconds); None before the first batch. Kept
        # here, where batches are recorded, rather than recomputed for every stream the worker counts.
        self.batch_s: float | None = None

    def observe(self, batch_s: float) -> None:
        """Record how long the model took for a batch (seconds)."""
        self._recent_s.append(batch_s)
        self.batch_s = statistics.median(self._recent_s)

    def window_s(self) -> float:
        """The wait allowed now: the configured window, capped by the share of a batch's time."""
        window = self.window_ms / 1000.0
        batch = self.batch_s
        return window if batch is None else min(window, WINDOW_SHARE * batch)

    def quiet_after_s(self) -> float:
        """How long after its last frame a stream stops being waited for."""
        batch = self.batch_s
        return QUIET_AFTER_MIN_S if batch is None else max(QUIET_AFTER_MIN_S, QUIET_AFTER_BATCHES * batch)

    def is_active(self, last_active_at: float, now: float) -> bool:
        """Whether a stream last active at `last_active_at` (monotonic s) may still send soon."""
        return now - last_active_at <= self.quiet_after_s()

    def delay(self, *, first_waiting_at: float, waiting: int, expected: int, max_batch: int, now: float) -> float:
        """Seconds the worker should still wait before taking a batch; <= 0: take it now.

        `waiting`: streams with a frame in their slot; `expected`: those plus the active streams
        that may send one; `first_waiting_at`: when the oldest waiting frame arrived (monotonic s).
        Counted from that arrival, not from now: no frame waits for company longer than the window
        in all, however long it already waited for a busy model.
        """
        if self.window_ms <= 0 or waiting >= min(max_batch, expected):
            return 0.0  # the batch is as full as it will get
        return first_waiting_at + self.window_s() - now
