"""Subtitle and log writers: cues (record.py) as WebVTT, SRT, JSON Lines or plain text.

Each writer writes one cue at a time and flushes, so a file being written can be followed (`tail
-f`) and a live `camcap watch` shows every caption as it comes. SRT is composed by the `srt`
library; WebVTT is simple enough to write here and is checked against `webvtt-py`'s parser in the
tests.
"""

from __future__ import annotations

import datetime
import json
import re
from abc import ABC, abstractmethod
from typing import Literal, TextIO

import srt

from camcap.outputs.record import CaptionEvent, Cue

Format = Literal["vtt", "srt", "jsonl", "txt"]
FORMATS: tuple[Format, ...] = ("vtt", "srt", "jsonl", "txt")
# The file suffix of each format: `talk.mp4` -> `talk.vtt`.
SUFFIXES: dict[Format, str] = {"vtt": ".vtt", "srt": ".srt", "jsonl": ".jsonl", "txt": ".txt"}

_BLANK_LINES = re.compile(r"\n\s*\n")


class CueWriter(ABC):
    """Writes cues to a text stream, one at a time, flushing each."""

    def __init__(self, out: TextIO, *, name_sources: bool = False) -> None:
        """`name_sources`: start each cue's text with its source's name (several live sources in
        one subtitle file)."""
        self.out = out
        self.name_sources = name_sources
        self.count = 0

    def begin(self) -> None:  # noqa: B027 - only WebVTT has a header
        """Write what comes before the first cue (a header)."""

    def write(self, cue: Cue) -> None:
        self.count += 1
        self.out.write(self._format(cue))
        self.out.flush()

    def text(self, cue: Cue) -> str:
        text = cue.text.strip()
        if self.name_sources and cue.event.source:
            text = f"{cue.event.source}: {text}"
        return text

    @abstractmethod
    def _format(self, cue: Cue) -> str: ...


class VttWriter(CueWriter):
    """WebVTT (https://www.w3.org/TR/webvtt1/): what browsers' <track> elements read."""

    def begin(self) -> None:
        self.out.write("WEBVTT\n\n")
        self.out.flush()

    def _format(self, cue: Cue) -> str:
        # A blank line would end the cue, and "-->", "<" and "&" have meanings in cue text.
        text = _BLANK_LINES.sub("\n", self.text(cue))
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        start, end = _clock(cue.start), _clock(_after(cue))
        return f"{self.count}\n{start} --> {end}\n{text}\n\n"


class SrtWriter(CueWriter):
    """SubRip: what most video players and editors read."""

    def _format(self, cue: Cue) -> str:
        subtitle = srt.Subtitle(
            index=self.count,
            start=datetime.timedelta(seconds=cue.start),
            end=datetime.timedelta(seconds=_after(cue)),
            content=srt.make_legal_content(self.text(cue)),
        )
        return subtitle.to_srt()


class JsonlCueWriter(CueWriter):
    """One JSON object per cue: {"t_start", "t_end", "text", "task", "model", "inference_ms"}."""

    def _format(self, cue: Cue) -> str:
        record = cue.record()
        if self.name_sources:
            record["source"] = cue.event.source
        return json.dumps(record, ensure_ascii=False) + "\n"


class TextWriter(CueWriter):
    """One line per cue: `[00:00:02.000 --> 00:00:04.000] text`, for reading and grepping."""

    def _format(self, cue: Cue) -> str:
        text = " ".join(self.text(cue).split())
        return f"[{_clock(cue.start)} --> {_clock(cue.end)}] {text}\n"


def cue_writer(fmt: Format, out: TextIO, *, name_sources: bool = False) -> CueWriter:
    """The writer of `fmt` on `out`; call `begin()` before the first cue."""
    writers: dict[str, type[CueWriter]] = {
        "vtt": VttWriter,
        "srt": SrtWriter,
        "jsonl": JsonlCueWriter,
        "txt": TextWriter,
    }
    try:
        return writers[fmt](out, name_sources=name_sources)
    except KeyError:
        raise ValueError(f"Unknown output format {fmt!r}; expected one of: {', '.join(FORMATS)}.") from None


def write_live_record(out: TextIO, event: CaptionEvent) -> None:
    """One `camcap watch` JSON Lines row, flushed."""
    out.write(json.dumps(event.live_record(), ensure_ascii=False) + "\n")
    out.flush()


# Subtitle formats need an end strictly after the start; a cue of a frame that was the very last
# one shown lasts at least this long.
_MIN_CUE_S = 0.001


def _after(cue: Cue) -> float:
    return max(cue.end, cue.start + _MIN_CUE_S)


def _clock(seconds: float) -> str:
    """`HH:MM:SS.mmm` (WebVTT and the text format; SRT's comma comes from the srt library)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
