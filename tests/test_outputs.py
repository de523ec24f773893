"""Cue rules and writers: each format is read back by an independent parser (webvtt-py, srt)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest
import srt
import webvtt

from camcap.outputs.files import AtomicTextFile, OutputFileError
from camcap.outputs.record import CaptionEvent, Cue, CueBuilder
from camcap.outputs.writers import FORMATS, cue_writer, write_live_record


def _event(t: float, text: str, source: str | None = None) -> CaptionEvent:
    return CaptionEvent(t=t, text=text, task="caption", model="random:blip-tiny", inference_ms=12.345, source=source)


def _cues(events: list[CaptionEvent], end: float) -> list[Cue]:
    builder = CueBuilder()
    cues = [cue for event in events if (cue := builder.add(event)) is not None]
    last = builder.finish(end)
    return cues + ([last] if last is not None else [])


def test_a_cue_runs_to_the_next_caption_and_the_last_to_the_end():
    cues = _cues([_event(0.0, "a red square"), _event(2.0, "a green circle"), _event(4.0, "a blue bar")], end=6.0)
    assert [(cue.start, cue.end, cue.text) for cue in cues] == [
        (0.0, 2.0, "a red square"),
        (2.0, 4.0, "a green circle"),
        (4.0, 6.0, "a blue bar"),
    ]


def test_identical_consecutive_captions_merge_into_one_cue():
    events = [_event(0.0, "red"), _event(1.0, "red"), _event(2.0, "green"), _event(3.0, "green "), _event(4.0, "red")]
    cues = _cues(events, end=5.0)
    expected = [(0.0, 2.0, "red"), (2.0, 4.0, "green"), (4.0, 5.0, "red")]
    assert [(cue.start, cue.end, cue.text) for cue in cues] == expected


def test_add_hands_back_a_cue_only_when_a_different_caption_ends_it():
    builder = CueBuilder()
    assert builder.add(_event(0.0, "red")) is None
    assert builder.add(_event(1.0, "red")) is None
    ended = builder.add(_event(2.0, "green"))
    assert ended is not None and (ended.start, ended.end, ended.text) == (0.0, 2.0, "red")
    assert builder.finish(1.0) == Cue(2.0, 2.0, _event(2.0, "green"))  # never ends before it starts
    assert builder.finish(9.0) is None


def _write(fmt: str, cues: list[Cue], *, name_sources: bool = False) -> str:
    out = io.StringIO()
    writer = cue_writer(fmt, out, name_sources=name_sources)  # type: ignore[arg-type]
    writer.begin()
    for cue in cues:
        writer.write(cue)
    return out.getvalue()


_CUES = _cues([_event(0.0, "a red square"), _event(2.5, "a <b> & c --> d"), _event(3661.25, "later")], end=3700.0)


def test_webvtt_reads_back_with_webvtt_py():
    text = _write("vtt", _CUES)
    captions = webvtt.from_buffer(io.StringIO(text)).captions
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:00.000", "00:00:02.500"),
        ("00:00:02.500", "01:01:01.250"),
        ("01:01:01.250", "01:01:40.000"),
    ]
    assert captions[0].text == "a red square"
    assert "-->" not in captions[1].raw_text  # escaped, so the cue stays one cue
    assert captions[1].raw_text == "a &lt;b&gt; &amp; c --&gt; d"


def test_srt_reads_back_with_the_srt_library():
    subtitles = list(srt.parse(_write("srt", _CUES)))
    assert [(s.index, s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subtitles] == [
        (1, 0.0, 2.5, "a red square"),
        (2, 2.5, 3661.25, "a <b> & c --> d"),
        (3, 3661.25, 3700.0, "later"),
    ]


def test_jsonl_rows_have_the_documented_fields_in_seconds():
    rows = [json.loads(line) for line in _write("jsonl", _CUES).splitlines()]
    assert rows[1] == {
        "t_start": 2.5,
        "t_end": 3661.25,
        "text": "a <b> & c --> d",
        "task": "caption",
        "model": "random:blip-tiny",
        "inference_ms": 12.3,
    }


def test_text_lines_carry_both_times():
    assert _write("txt", _CUES).splitlines()[2] == "[01:01:01.250 --> 01:01:40.000] later"


@pytest.mark.parametrize("fmt", FORMATS)
def test_blank_lines_in_a_caption_never_split_a_cue(fmt):
    cues = _cues([_event(0.0, "one\n\ntwo"), _event(1.0, "three")], end=2.0)
    text = _write(fmt, cues)
    if fmt == "vtt":
        assert len(webvtt.from_buffer(io.StringIO(text)).captions) == 2
    elif fmt == "srt":
        assert len(list(srt.parse(text))) == 2
    else:
        assert len(text.splitlines()) == 2


def test_several_sources_are_named_in_the_cue_text():
    cues = [Cue(0.0, 1.0, _event(0.0, "a door", source="door")), Cue(0.0, 1.0, _event(0.0, "a desk", source="desk"))]
    subtitles = list(srt.parse(_write("srt", cues, name_sources=True)))
    assert [s.content for s in subtitles] == ["door: a door", "desk: a desk"]


def test_a_zero_length_last_cue_still_ends_after_it_starts():
    captions = webvtt.from_buffer(io.StringIO(_write("vtt", [Cue(4.0, 4.0, _event(4.0, "x"))]))).captions
    assert (captions[0].start, captions[0].end) == ("00:00:04.000", "00:00:04.001")


def test_live_records_have_the_watch_fields():
    event = CaptionEvent(
        t=1.0, text="a cat", task="caption", model="m", inference_ms=101.26, source="door",
        at=datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=timezone.utc), frame_age_ms=150.04,
    )  # fmt: skip
    out = io.StringIO()
    write_live_record(out, event)
    assert json.loads(out.getvalue()) == {
        "at": "2026-11-27T12:00:00.123+00:00",
        "source": "door",
        "text": "a cat",
        "task": "caption",
        "model": "m",
        "frame_age_ms": 150.0,
        "inference_ms": 101.3,
    }


def test_an_atomic_file_appears_only_when_committed(tmp_path):
    target = tmp_path / "talk.vtt"
    target.write_text("old")
    with AtomicTextFile(target) as out:
        out.stream.write("new")
        assert target.read_text() == "old"
    assert target.read_text() == "old"  # not committed: discarded
    assert list(tmp_path.iterdir()) == [target]
    with AtomicTextFile(target) as out:
        out.stream.write("new")
        out.commit()
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_an_atomic_file_in_a_missing_folder_says_so(tmp_path):
    with pytest.raises(OutputFileError, match="does not exist"):
        AtomicTextFile(tmp_path / "nope" / "talk.vtt")
