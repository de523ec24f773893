// camcap/web/export.js: the History panel's downloads (cue rules shared with the CLI's subtitles).
import assert from "node:assert/strict";
import { test } from "node:test";

import { cues, entryLine, FORMATS, formatDuration, toJsonl, toSrt, toText, toVtt } from "../../camcap/web/export.js";

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5); // ms since the epoch

function entry(fields) {
  return { id: 0, text: "a cup", label: null, task: "caption", startAt: T0, lastAt: T0, endAt: T0, count: 1, ...fields };
}

test("a cue runs from its frame to the next caption's frame, the last one to its own end", () => {
  const history = {
    startedAt: T0,
    entries: [
      entry({ startAt: T0 + 1500, endAt: T0 + 2000 }),
      entry({ text: "a dog", startAt: T0 + 4000, lastAt: T0 + 5000, endAt: T0 + 7250 }),
    ],
  };
  const got = cues(history).map(({ index, start, end, text }) => ({ index, start, end, text }));
  assert.deepEqual(got, [
    { index: 1, start: 1.5, end: 4, text: "a cup" },
    { index: 2, start: 4, end: 7.25, text: "a dog" },
  ]);
  assert.equal(cues(history)[1].entry, history.entries[1]);
});

test("cue times count from the first entry when the session start is unknown, and never go below zero", () => {
  const history = { startedAt: null, entries: [entry({ startAt: T0 + 500, endAt: T0 + 1500 })] };
  assert.deepEqual(
    cues(history).map(({ start, end }) => [start, end]),
    [[0, 1]],
  );
  const early = { startedAt: T0 + 1000, entries: [entry({ startAt: T0, endAt: T0 + 3000 })] };
  assert.deepEqual(
    cues(early).map(({ start, end }) => [start, end]),
    [[0, 2]],
  );
  assert.deepEqual(cues({ startedAt: null, entries: [] }), []);
});

test("a cue whose clock stepped backwards still lasts a millisecond", () => {
  const history = {
    startedAt: T0,
    entries: [entry({ startAt: T0 + 3000, endAt: T0 + 3000 }), entry({ text: "b", startAt: T0 + 2000, endAt: T0 + 2000 })],
  };
  const [first, second] = cues(history);
  assert.deepEqual([first.start, first.end], [3, 3.001]);
  assert.deepEqual([second.start, second.end], [2, 2.001]);
});

test("a cue shows the question above the answer, folds blank lines and is never empty", () => {
  const history = {
    startedAt: T0,
    entries: [
      entry({ label: "What is on the table?", text: "a cup\r\n\r\n  \nand a plate\rnear it" }),
      entry({ text: "  ", startAt: T0 + 1000 }),
    ],
  };
  assert.deepEqual(
    cues(history).map((cue) => cue.text),
    ["What is on the table?\na cup\nand a plate\nnear it", "…"],
  );
});

test("WebVTT: a header, numbered cues with dotted timestamps, and escaped markup", () => {
  const history = {
    startedAt: T0,
    entries: [
      entry({ text: "a <b>cup</b> & a --> sign", startAt: T0 + 3_723_456, endAt: T0 + 3_725_000 }),
      entry({ text: "a dog", startAt: T0 + 3_726_000, endAt: T0 + 3_727_999.6 }),
    ],
  };
  assert.equal(
    toVtt(history),
    "WEBVTT\n\n" +
      "1\n01:02:03.456 --> 01:02:06.000\na &lt;b&gt;cup&lt;/b&gt; &amp; a --&gt; sign\n\n" +
      "2\n01:02:06.000 --> 01:02:08.000\na dog\n",
  );
  assert.equal(toVtt({ startedAt: null, entries: [] }), "WEBVTT\n\n");
});

test("SubRip: numbered cues with comma timestamps and the text as it is", () => {
  const history = {
    startedAt: T0,
    entries: [entry({ text: "a <cup>", startAt: T0 + 61_005, endAt: T0 + 62_000 }), entry({ text: "b", startAt: T0 + 600_000, endAt: T0 + 600_050 })],
  };
  assert.equal(toSrt(history), "1\n00:01:01,005 --> 00:10:00,000\na <cup>\n\n2\n00:10:00,000 --> 00:10:00,050\nb\n");
});

test("JSON Lines: one object per entry with cue times, wall-clock times and repeats", () => {
  const history = {
    startedAt: T0,
    entries: [
      entry({ text: "a cup", task: "query", label: "What?", startAt: T0 + 1234.5678, lastAt: T0 + 2000, endAt: T0 + 2500, count: 3 }),
      entry({ text: "a dog", startAt: T0 + 4000, lastAt: T0 + 4000, endAt: T0 + 4000 }),
    ],
  };
  const lines = toJsonl(history).split("\n");
  assert.equal(lines.length, 3);
  assert.equal(lines[2], "");
  assert.deepEqual(JSON.parse(lines[0]), {
    start: 1.235,
    end: 4,
    text: "a cup",
    task: "query",
    question: "What?",
    captured_at: new Date(T0 + 1234.5678).toISOString(),
    last_captured_at: new Date(T0 + 2000).toISOString(),
    ended_at: new Date(T0 + 2500).toISOString(),
    repeats: 3,
  });
  assert.deepEqual(Object.keys(JSON.parse(lines[0])), [
    "start",
    "end",
    "text",
    "task",
    "question",
    "captured_at",
    "last_captured_at",
    "ended_at",
    "repeats",
  ]);
  const second = JSON.parse(lines[1]);
  assert.deepEqual([second.start, second.end, second.question, second.repeats], [4, 4.001, null, 1]);
});

test("plain text: one line per entry, oldest first, with the question and how long it held", () => {
  const when = (at) => new Date(at).toLocaleTimeString([], { hour12: false });
  const once = entry({ text: "a cup" });
  const held = entry({ text: "a dog", label: "Who is there?", startAt: T0 + 1000, endAt: T0 + 73_000, count: 4 });
  assert.equal(entryLine(once), `[${when(T0)}] a cup`);
  assert.equal(entryLine(held), `[${when(T0 + 1000)}] Who is there? a dog (×4, 1 min 12 s)`);
  assert.equal(toText({ startedAt: T0, entries: [once, held] }), `${entryLine(once)}\n${entryLine(held)}\n`);
  assert.match(when(T0), /^\d\d:\d\d:\d\d$/, "24-hour clock");
});

test("durations read as seconds, minutes or hours, rounded, never negative", () => {
  const cases = [
    [-5000, "0 s"],
    [0, "0 s"],
    [499, "0 s"],
    [500, "1 s"],
    [59_499, "59 s"],
    [59_500, "1 min 0 s"],
    [184_000, "3 min 4 s"],
    [3_599_499, "59 min 59 s"],
    [3_599_500, "1 h 0 min"],
    [3_720_000, "1 h 2 min"],
    [7_259_000, "2 h 0 min"],
    [7_260_000, "2 h 1 min"],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, `${ms} ms`);
});

test("each download format renders with its own function and media type", () => {
  assert.deepEqual(Object.keys(FORMATS), ["txt", "vtt", "srt", "jsonl"]);
  assert.deepEqual(
    Object.values(FORMATS).map((format) => [format.render, format.type]),
    [
      [toText, "text/plain"],
      [toVtt, "text/vtt"],
      [toSrt, "application/x-subrip"],
      [toJsonl, "application/jsonl"],
    ],
  );
});
