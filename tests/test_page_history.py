"""The History panel and its downloads, in real Chromium against a real `camcap serve`.

Live captions of the fake camera must appear in the panel as they were shown (newest first,
identical consecutive ones merged); the downloads must parse as WebVTT (webvtt-py), SubRip (srt)
and JSON Lines with one cue per entry and the cue rules of the CLI's subtitles. The history
module itself is then driven in the page with thousands of synthetic captions to show that its
entries and the panel's elements stay bounded.
"""

# Fixtures imported from tests/page_browser.py are then named as test parameters (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import srt
import webvtt

from tests.page_browser import (  # noqa: F401  (fixtures)
    Server,
    artifact,
    camcap_server,
    chromium,
    chromium_path,
    context,
    page,
    page_errors,
    start_camera,
    wait_for,
)

pytestmark = pytest.mark.browser


@dataclass
class Stream:
    """The caption events the page receives, and which frames it sent and had answered."""

    captions: list[dict[str, Any]] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)
    answered: set[int] = field(default_factory=set)

    @classmethod
    def attach(cls, page: Any) -> Stream:
        stream = cls()

        def on_sent(payload: str | bytes) -> None:
            if isinstance(payload, bytes):  # FRAME_MAGIC, a uint32 header length, the JSON header
                (length,) = struct.unpack(">I", payload[4:8])
                stream.sent.add(json.loads(payload[8 : 8 + length])["seq"])

        def on_received(payload: str | bytes) -> None:
            event = json.loads(payload)
            if event.get("type") == "caption":
                stream.captions.append(event)
            if event.get("type") in ("caption", "unchanged", "error") and event.get("seq") is not None:
                stream.answered.add(event["seq"])

        def on_socket(socket: Any) -> None:
            socket.on("framesent", on_sent)
            socket.on("framereceived", on_received)

        page.on("websocket", on_socket)
        return stream

    def settled(self) -> bool:
        """Every frame sent has its answer (after the camera stopped: nothing more will come)."""
        return self.sent <= self.answered


def _texts(events: list[dict]) -> list[str]:
    return [event["text"].strip() for event in events]


def _collapse(texts: list[str]) -> list[str]:
    """Identical consecutive captions as one."""
    return [text for i, text in enumerate(texts) if i == 0 or texts[i - 1] != text]


def _runs(texts: list[str]) -> list[int]:
    """How many identical consecutive captions each collapsed entry stands for."""
    runs: list[int] = []
    for i, text in enumerate(texts):
        if i and texts[i - 1] == text:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def _open_history_by_keyboard(page: Any) -> None:
    from playwright.sync_api import expect

    button = page.get_by_role("button", name="History")
    for _ in range(12):
        page.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")


def _download(page: Any, name: str) -> Path:
    with page.expect_download() as info:
        page.get_by_role("button", name=name).click()
    download = info.value
    path = artifact(f"history-{download.suggested_filename}")
    download.save_as(path)
    return path


def _seconds(t: Any) -> float:
    return t.total_seconds() if hasattr(t, "total_seconds") else float(t)


def test_history_lists_the_captions_shown_and_downloads_parse(
    camcap_server: Server, context: Any, page: Any, page_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=camcap_server.url.rstrip("/"))
    stream = Stream.attach(page)
    start_camera(page, camcap_server)
    wait_for(page, lambda: len(stream.captions) >= 4, "four captions")
    page.get_by_role("button", name="Stop camera").click()
    wait_for(page, stream.settled, "the answer to the last frame sent")
    _open_history_by_keyboard(page)
    entries = page.locator("#history .history-entry")
    expect(entries.first).to_be_visible()
    shown = [text.strip() for text in page.locator("#history .history-text").all_inner_texts()]
    repeats = page.locator("#history .history-repeats").all_inner_texts()
    panel = list(zip(shown, [int(r[1:].split(" ")[0]) if r else 1 for r in repeats], strict=True))
    # Stop drops the answer to the frame still in flight when it was pressed (app.js: shownFromSeq),
    # so the page kept every caption, or every caption but that last one: never any other.
    candidates = [stream.captions, stream.captions[:-1]]
    kept = [c for c in candidates if list(zip(_collapse(_texts(c)), _runs(_texts(c)), strict=True))[::-1] == panel]
    assert kept, f"History {panel} is neither every caption nor every caption but the last: {_texts(stream.captions)}"
    events = kept[0]

    expected = _collapse(_texts(events))
    expect(entries).to_have_count(len(expected))
    assert shown == expected[::-1], "History lists the captions shown, newest first"
    runs = _runs(_texts(events))
    assert [count for _, count in panel] == runs[::-1], "repeats collapse with a count"
    first_capture = events[0]["captured_at"]
    newest_time = page.locator("#history .history-entry time").last.get_attribute("datetime")
    assert datetime.fromisoformat(newest_time.replace("Z", "+00:00")).timestamp() == pytest.approx(
        first_capture / 1000, abs=0.002
    ), "each entry carries its frame's capture time"
    page.screenshot(path=artifact("history-panel.png"))

    # WebVTT: one cue per entry, from session start, each ending where the next begins.
    vtt = webvtt.from_buffer(io.StringIO(_download(page, "Download .vtt").read_text()))
    assert [cue.text for cue in vtt] == expected
    starts = [cue.start_time.in_milliseconds() / 1000 for cue in vtt]
    ends = [cue.end_time.in_milliseconds() / 1000 for cue in vtt]
    assert starts[0] == 0
    assert ends[:-1] == starts[1:], "each cue ends where the next one begins"
    assert all(end > start for start, end in zip(starts, ends, strict=True))

    # SubRip: the same cues.
    subs = list(srt.parse(_download(page, "Download .srt").read_text()))
    assert [sub.content for sub in subs] == expected
    assert [sub.index for sub in subs] == list(range(1, len(expected) + 1))
    assert [_seconds(sub.start) for sub in subs] == pytest.approx(starts, abs=0.001)
    assert [_seconds(sub.end) for sub in subs] == pytest.approx(ends, abs=0.001)

    # JSON Lines: the cue times again, and wall-clock times.
    lines = [json.loads(line) for line in _download(page, "Download .jsonl").read_text().splitlines()]
    assert [line["text"] for line in lines] == expected
    assert [line["start"] for line in lines] == pytest.approx(starts, abs=0.001)
    assert datetime.fromisoformat(lines[0]["captured_at"].replace("Z", "+00:00")).timestamp() == pytest.approx(
        first_capture / 1000, abs=0.002
    )

    text = _download(page, "Download .txt").read_text()
    lines_txt = [re.fullmatch(r"\[[\d:]+\] (.*?)(?: \(×(\d+), [^)]*\))?", line) for line in text.splitlines()]
    assert [m and m[1] for m in lines_txt] == expected
    assert [int(m[2] or 1) for m in lines_txt if m] == _runs([event["text"].strip() for event in events])

    page.get_by_role("button", name="Copy all").click()
    assert page.evaluate("navigator.clipboard.readText()") == text
    entries.first.get_by_role("button").click()
    assert page.evaluate("navigator.clipboard.readText()") == text.splitlines()[-1]

    # On a phone the panel fits between the header and the controls, which stay usable.
    page.set_viewport_size({"width": 390, "height": 844})
    panel = page.locator("#history").bounding_box()
    bar = page.locator(".bar").bounding_box()
    assert panel["y"] >= 0 and panel["x"] >= 0 and panel["x"] + panel["width"] <= 390
    assert panel["y"] + panel["height"] <= bar["y"] + 0.5, f"the panel {panel} runs under the controls {bar}"
    page.screenshot(path=artifact("history-panel-phone.png"))

    page.get_by_role("button", name="Clear").click()
    expect(entries).to_have_count(0)
    expect(page.locator("#history [data-role=empty]")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("heading", name="History")).to_be_hidden()
    expect(page.get_by_role("button", name="History")).to_be_focused()
    assert page_errors == []


# Drives the page's own modules with synthetic captions: 6,000 captions in runs of three identical
# ones, a bounded history of 50 entries with its panel open the whole time.
SYNTHETIC_JS = """async ({captions, maxEntries}) => {
  const { CaptionHistory } = await import("/static/history.js");
  const { HistoryPanel } = await import("/static/history-panel.js");
  const { toVtt, toSrt, toJsonl } = await import("/static/export.js");
  const root = document.getElementById("history").cloneNode(true);
  root.id = "synthetic-history";
  root.querySelector("h2").id = "synthetic-title";
  root.setAttribute("aria-labelledby", "synthetic-title");
  document.body.append(root);
  const history = new CaptionHistory({ maxEntries });
  const panel = new HistoryPanel(root, history);
  panel.open();
  const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
  const sizes = [];
  for (let i = 0; i < captions; i++) {
    const capturedAt = t0 + i * 1000;
    history.add({ text: `scene ${Math.floor(i / 3)}`, capturedAt, finishedAt: capturedAt + 400 });
    if (i % 1000 === 999) sizes.push([history.entries.length, root.querySelectorAll("li").length, panel.items.size]);
  }
  return {
    sizes,
    newest: [...root.querySelectorAll(".history-text")].slice(0, 2).map((e) => e.textContent),
    repeats: root.querySelector(".history-repeats").textContent,
    counts: history.entries.map((e) => e.count),
    vtt: toVtt(history),
    srt: toSrt(history),
    jsonl: toJsonl(history),
  };
}"""


def test_history_stays_bounded_after_thousands_of_captions(
    camcap_server: Server, page: Any, page_errors: list[str]
) -> None:
    page.goto(camcap_server.url)
    result = page.evaluate(SYNTHETIC_JS, {"captions": 6000, "maxEntries": 50})
    assert result["sizes"] == [[50, 50, 50]] * 6, "entries, list items and the panel's map stay at the bound"
    assert result["newest"] == ["scene 1999", "scene 1998"]
    assert result["counts"] == [3] * 50, "identical consecutive captions are one entry"
    assert result["repeats"] == "×3 · 2 s"  # first capture to the last one's end: 2.4 s

    # The exports of what is kept: times still count from the session's start (scene 1950 began
    # at 5850 s), each cue ends where the next begins, the last one at its own end.
    vtt = list(webvtt.from_buffer(io.StringIO(result["vtt"])))
    assert len(vtt) == 50
    assert vtt[0].text == "scene 1950" and vtt[0].start == "01:37:30.000" and vtt[0].end == "01:37:33.000"
    assert vtt[-1].text == "scene 1999" and vtt[-1].start == "01:39:57.000" and vtt[-1].end == "01:39:59.400"
    subs = list(srt.parse(result["srt"]))
    assert len(subs) == 50 and _seconds(subs[-1].end) == pytest.approx(5999.4)
    lines = [json.loads(line) for line in result["jsonl"].splitlines()]
    assert len(lines) == 50
    assert lines[-1]["captured_at"] == "2026-01-01T13:39:57.000Z" and lines[-1]["repeats"] == 3
    assert page_errors == []
