// camcap/web/history.js: one camera's finished captions, merged and bounded.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CaptionHistory, DEFAULT_MAX_ENTRIES } from "../../camcap/web/history.js";

function recorded(history) {
  const changes = [];
  history.addEventListener("change", (event) => changes.push(event.detail));
  return changes;
}

test("identical consecutive captions are one entry that lasts", () => {
  const history = new CaptionHistory();
  const changes = recorded(history);
  const first = history.add({ text: " a cup ", capturedAt: 1000, finishedAt: 1500 });
  const again = history.add({ text: "a cup", capturedAt: 3000, finishedAt: 3400 });
  assert.equal(again, first);
  assert.deepEqual(history.entries, [
    {
      id: 0,
      text: "a cup",
      label: null,
      task: "caption",
      startAt: 1000,
      lastAt: 3000,
      endAt: 3400,
      count: 2,
      alerts: [], // the alerts that marked this entry (alerts.js)
    },
  ]);
  assert.deepEqual(
    changes.map(({ kind, entry, dropped }) => [kind, entry, dropped]),
    [
      ["add", first, []],
      ["update", first, []],
    ],
  );
  // An older frame's caption finishing late moves nothing backwards.
  history.add({ text: "a cup", capturedAt: 2000, finishedAt: 2500 });
  assert.deepEqual([first.startAt, first.lastAt, first.endAt, first.count], [1000, 3000, 3400, 3]);
});

test("another text, question or task starts a new entry", () => {
  const history = new CaptionHistory();
  history.add({ text: "a cup", capturedAt: 1 });
  history.add({ text: "a cup", capturedAt: 2, label: "What?", task: "query" });
  history.add({ text: "a cup", capturedAt: 3, label: "Where?", task: "query" });
  history.add({ text: "a cup", capturedAt: 4, label: "Where?", task: "detect" });
  history.add({ text: "a mug", capturedAt: 5, label: "Where?", task: "detect" });
  assert.deepEqual(
    history.entries.map((e) => [e.id, e.text, e.label, e.task, e.count]),
    [
      [0, "a cup", null, "caption", 1],
      [1, "a cup", "What?", "query", 1],
      [2, "a cup", "Where?", "query", 1],
      [3, "a cup", "Where?", "detect", 1],
      [4, "a mug", "Where?", "detect", 1],
    ],
  );
});

test("a caption without a capture time is placed at its finish time", () => {
  const history = new CaptionHistory();
  const entry = history.add({ text: 42, capturedAt: null, finishedAt: 5000 });
  assert.deepEqual([entry.text, entry.startAt, entry.lastAt, entry.endAt], ["42", 5000, 5000, 5000]);
  const later = history.add({ text: "b", capturedAt: Number.NaN, finishedAt: 6000 });
  assert.equal(later.startAt, 6000);
  assert.equal(history.startedAt, 5000, "the session starts at the first caption, once");
  const before = Date.now();
  const now = history.add({ text: "c" });
  assert.ok(now.startAt >= before && now.startAt <= Date.now(), "finishedAt defaults to now");
});

test("an entry ends when its caption finished, or when its frame was, if later", () => {
  const history = new CaptionHistory();
  assert.equal(history.add({ text: "a", capturedAt: 1000, finishedAt: 1800 }).endAt, 1800);
  assert.equal(history.add({ text: "b", capturedAt: 3000, finishedAt: 2000 }).endAt, 3000);
});

test("the oldest entries go first once the bound is reached", () => {
  const history = new CaptionHistory({ maxEntries: 2 });
  const changes = recorded(history);
  const [a, b, c] = ["a", "b", "c"].map((text, i) => history.add({ text, capturedAt: i }));
  assert.deepEqual(history.entries, [b, c]);
  assert.deepEqual(changes.at(-1), { kind: "add", entry: c, dropped: [a] });
  assert.deepEqual(changes[1].dropped, [], "nothing dropped while under the bound");
  assert.equal(DEFAULT_MAX_ENTRIES, 500);
  assert.equal(new CaptionHistory().maxEntries, 500);
  assert.equal(new CaptionHistory({ maxEntries: 1 }).maxEntries, 1);
  for (const bad of [0, -1, Number.NaN, "many"]) {
    assert.throws(() => new CaptionHistory({ maxEntries: bad }), { name: "RangeError", message: `maxEntries must be at least 1, got ${bad}.` });
  }
});

test("a later unchanged frame extends the latest entry, an earlier one does nothing", () => {
  const history = new CaptionHistory();
  history.stillTrue(9000); // nothing yet: nothing to extend
  const changes = recorded(history);
  const entry = history.add({ text: "a", capturedAt: 1000, finishedAt: 2000 });
  history.stillTrue(2000);
  history.stillTrue(1500);
  history.stillTrue(Number.NaN);
  assert.equal(entry.endAt, 2000);
  assert.equal(changes.length, 1);
  history.stillTrue(2001);
  assert.equal(entry.endAt, 2001);
  assert.deepEqual(changes.at(-1), { kind: "update", entry, dropped: [] });
});

test("newest first for the panel, and clear starts a new session", () => {
  const history = new CaptionHistory();
  const changes = recorded(history);
  const [a, b] = ["a", "b"].map((text, i) => history.add({ text, capturedAt: 100 + i }));
  assert.deepEqual(history.newestFirst(), [b, a]);
  assert.deepEqual(history.entries, [a, b], "the entries themselves stay oldest first");
  history.clear();
  assert.deepEqual([history.entries, history.startedAt], [[], null]);
  assert.deepEqual(changes.at(-1), { kind: "clear", entry: null, dropped: [] });
  history.add({ text: "c", capturedAt: 500 });
  assert.equal(history.startedAt, 500);
  assert.equal(history.entries[0].id, 2, "ids are never reused");
});
