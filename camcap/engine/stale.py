"""The stale-work cut: is a caption in progress still worth finishing?

With `cut_stale` on, a generation is stopped when a frame of the same stream waits that was
captured `stale_after_ms` later and shows a changed scene (or asks something else). The
scheduler decides *when* to look (only when every unfinished item of a batch is stale, never twice
in a row for a stream); this module decides *whether* one waiting frame supersedes one in progress.
Off by default: measured, it gives fewer captions and older ones on screen (docs/benchmarks.md).
"""

from __future__ import annotations

from camcap.engine.change import difference
from camcap.engine.events import Frame
from camcap.engine.options import StreamOptions


def supersedes(newer: Frame, current: Frame, options: StreamOptions, *, after_cut: bool) -> bool:
    """Whether waiting frame `newer` makes the caption of `current` not worth finishing.

    `after_cut`: `current` itself replaced a frame that was cut, so it is never cut (a scene that
    keeps changing still gets captions)."""
    if not options.cut_stale or after_cut:
        return False
    if capture_gap_ms(newer, current) <= options.stale_after_ms:
        return False
    if newer.task != current.task:
        return True
    old, new = current.signature, newer.signature
    if options.change_threshold <= 0 or old is None or new is None:
        return True  # no way to tell: newer is enough
    return difference(new, old) >= options.change_threshold


def capture_gap_ms(newer: Frame, older: Frame) -> float:
    """How much later `newer` was captured: by the client's clock when both frames carry it
    (the same client stamped both), else by when their bytes arrived."""
    if newer.captured_at is not None and older.captured_at is not None:
        return newer.captured_at - older.captured_at
    return (newer.received_at - older.received_at) * 1000.0
