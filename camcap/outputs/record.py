"""The caption-event record: one caption of one frame, as every output sees it.

Subtitle writers, `camcap watch`'s JSON Lines and the server's source events are all built from
this one record (DESIGN.md: "a new output is a new consumer, not a new path"). It holds plain
values only, so it can cross threads and be written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class CaptionEvent:
    """The final caption of one frame.

    `t` is the frame's media time in seconds: its presentation timestamp in a video file, or the
    seconds since a live source started being watched. `at` (wall clock, UTC), `source` and
    `frame_age_ms` are set for live sources only.
    """

    t: float
    text: str
    task: str  # TaskKind value: "caption", "query", ...
    model: str  # the model spec that wrote it
    inference_ms: float
    source: str | None = None
    at: datetime | None = None
    frame_age_ms: float | None = None

    def live_record(self) -> dict[str, Any]:
        """The JSON Lines row of `camcap watch`: one per caption, in the fields the README names."""
        at = self.at or datetime.now(timezone.utc)
        return {
            "at": at.isoformat(timespec="milliseconds"),
            "source": self.source,
            "text": self.text,
            "task": self.task,
            "model": self.model,
            "frame_age_ms": _ms(self.frame_age_ms),
            "inference_ms": _ms(self.inference_ms),
        }


@dataclass(frozen=True)
class Cue:
    """A caption on screen from `start` to `end` (seconds of media time)."""

    start: float
    end: float
    event: CaptionEvent  # the first caption of the cue (identical ones that followed merged in)

    @property
    def text(self) -> str:
        return self.event.text

    def record(self) -> dict[str, Any]:
        """The JSON Lines row of a video file's captions."""
        return {
            "t_start": round(self.start, 3),
            "t_end": round(self.end, 3),
            "text": self.event.text,
            "task": self.event.task,
            "model": self.event.model,
            "inference_ms": _ms(self.event.inference_ms),
        }


class CueBuilder:
    """Turns captions, in media-time order, into cues.

    A cue runs from its frame's time to the next *different* caption's frame time; identical
    consecutive captions merge into one cue. A cue is complete only when the next different caption
    arrives (or at `finish`), so `add` hands back the cue it completed, if any: writers that flush
    per caption write it at once.
    """

    def __init__(self) -> None:
        self._open: CaptionEvent | None = None
        self._start = 0.0

    @property
    def pending(self) -> CaptionEvent | None:
        """The caption whose cue is still open."""
        return self._open

    def add(self, event: CaptionEvent) -> Cue | None:
        """Take the next caption; return the cue it ends, if it ends one."""
        current = self._open
        if current is not None and _same(current, event):
            return None  # the scene is still described the same way: the cue goes on
        self._open, previous_start, self._start = event, self._start, event.t
        if current is None:
            return None
        return Cue(previous_start, max(event.t, previous_start), current)

    def finish(self, end: float) -> Cue | None:
        """The last cue, running to `end` (the end of the video, or when watching stopped)."""
        current, self._open = self._open, None
        if current is None:
            return None
        return Cue(self._start, max(end, self._start), current)


def _same(a: CaptionEvent, b: CaptionEvent) -> bool:
    return a.text.strip() == b.text.strip() and a.source == b.source


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
