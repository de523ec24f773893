// camcap/web/pacer.js: when the page sends its next frame, on a fake clock.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Pacer } from "../../camcap/web/pacer.js";
import { FakeClock, settle } from "./clock.mjs";

/** A pacer whose frames are recorded as [seq, time sent]; `answer` decides what sendFrame gives. */
function pacer(clock, options, answer = (seq) => seq) {
  const sent = [];
  let seq = 0;
  const p = new Pacer(async () => {
    const result = answer(seq + 1);
    if (result !== null) {
      seq += 1;
      sent.push([seq, clock.now]);
    }
    return result;
  });
  p.configure({ mode: "live", minGapMs: 0, intervalMs: 3000, ...options });
  return { p, sent };
}

test("nothing is sent before start, and the first frame goes at once", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, {});
  await clock.advance(10_000);
  assert.deepEqual(sent, []);
  p.start();
  await clock.advance(0);
  assert.deepEqual(sent, [[1, 1000 + 10_000]]);
});

test("live: the next frame waits for the caption of the one in flight", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, {});
  p.start();
  await clock.advance(5000);
  assert.equal(sent.length, 1, "one frame in flight, however long the model takes");
  assert.deepEqual(p.inFlight, { seq: 1, since: 1000 });
  p.done(1);
  await clock.advance(0);
  assert.deepEqual(sent, [
    [1, 1000],
    [2, 6000],
  ]);
});

test("live: an answer to an older frame does not free the slot, a newer one does", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, {});
  p.start();
  await clock.advance(0);
  p.done(1);
  await clock.advance(0);
  assert.equal(sent.length, 2);
  p.done(1); // late news about frame 1 while frame 2 is in flight
  await clock.advance(1000);
  assert.equal(sent.length, 2);
  p.done(7); // the server may answer only the newest frame
  await clock.advance(0);
  assert.equal(sent.length, 3);
});

test("live: the minimum gap spaces frames from the last one sent", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { minGapMs: 400 });
  p.start();
  await clock.advance(100);
  p.done(1); // answered 100 ms after it left
  await clock.advance(299);
  assert.equal(sent.length, 1);
  await clock.advance(1);
  assert.deepEqual(sent.at(-1), [2, 1400]);
  await clock.advance(1000);
  p.done(2); // answered long after the gap: the next frame goes at once
  await clock.advance(0);
  assert.deepEqual(sent.at(-1), [3, 2400]);
});

test("live: a negative minimum gap counts as none", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { minGapMs: -500 });
  assert.equal(p.minGapMs, 0);
  p.start();
  await clock.advance(0);
  p.done(1);
  await clock.advance(0);
  assert.deepEqual(sent, [
    [1, 1000],
    [2, 1000],
  ]);
});

test("live: after an unchanged answer the page looks again 100 ms later, not at once", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, {});
  p.start();
  await clock.advance(0);
  p.done(1, { unchanged: true });
  await clock.advance(99);
  assert.equal(sent.length, 1);
  await clock.advance(1);
  assert.deepEqual(sent.at(-1), [2, 1100]);
  p.done(2); // a real caption: no hold
  await clock.advance(0);
  assert.deepEqual(sent.at(-1), [3, 1100]);
});

test("live: a frame never answered is given up after two minutes", async (t) => {
  const clock = new FakeClock(t);
  const warnings = [];
  t.mock.method(console, "warn", (message) => warnings.push(message));
  const { p, sent } = pacer(clock, {});
  p.start();
  await clock.advance(119_999);
  assert.equal(sent.length, 1);
  await clock.advance(1);
  assert.deepEqual(sent.at(-1), [2, 121_000]);
  assert.deepEqual(warnings, ["camcap: no caption for frame 1 after 120 s; sending a new one"]);
});

test("interval: one frame every N ms whatever the model does", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { mode: "interval", intervalMs: 1000 });
  p.start();
  await clock.advance(3500);
  assert.deepEqual(
    sent.map(([, at]) => at),
    [1000, 2000, 3000, 4000],
  );
  assert.equal(p.inFlight, null, "nothing is waited for in interval mode");
  p.done(2); // answers change nothing
  await clock.advance(0);
  assert.equal(sent.length, 4);
});

test("interval: never shorter than 200 ms", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { mode: "interval", intervalMs: 50 });
  assert.equal(p.intervalMs, 200);
  p.start();
  await clock.advance(400);
  assert.deepEqual(
    sent.map(([, at]) => at),
    [1000, 1200, 1400],
  );
});

test("configure takes effect at once: from interval to live", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { mode: "interval", intervalMs: 10_000 });
  p.start();
  await clock.advance(0);
  p.configure({ mode: "live", minGapMs: 0, intervalMs: 10_000 });
  await clock.advance(0);
  assert.deepEqual(sent.at(-1), [2, 1000], "live with nothing in flight: send now");
});

test("a frame that could not be sent is tried again 250 ms later", async (t) => {
  const clock = new FakeClock(t);
  let ready = false;
  const { p, sent } = pacer(clock, {}, (seq) => (ready ? seq : null));
  p.start();
  await clock.advance(249);
  ready = true;
  await clock.advance(0);
  assert.deepEqual(sent, []);
  await clock.advance(1);
  assert.deepEqual(sent, [[1, 1250]]);
});

test("a send that throws is logged and tried again 250 ms later", async (t) => {
  const clock = new FakeClock(t);
  const errors = [];
  t.mock.method(console, "error", (...args) => errors.push(args));
  let fail = true;
  const { p, sent } = pacer(clock, {}, (seq) => {
    if (fail) throw new Error("canvas gone");
    return seq;
  });
  p.start();
  await clock.advance(0);
  assert.equal(errors.length, 1);
  assert.equal(errors[0][0], "camcap: could not send a frame");
  assert.equal(p.sending, false);
  fail = false;
  await clock.advance(250);
  assert.deepEqual(sent, [[1, 1250]]);
});

test("stop sends nothing more, even when the send in progress finishes", async (t) => {
  const clock = new FakeClock(t);
  let release;
  const sent = [];
  const p = new Pacer(
    () =>
      new Promise((resolve) => {
        sent.push(clock.now);
        release = resolve;
      }),
  );
  p.configure({ mode: "interval", minGapMs: 0, intervalMs: 1000 });
  p.start();
  await clock.advance(0);
  assert.equal(p.sending, true);
  await clock.advance(5000);
  assert.equal(sent.length, 1, "no second send while one is in progress");
  p.stop();
  release(1);
  await settle();
  assert.equal(p.sending, false);
  await clock.advance(10_000);
  assert.deepEqual(sent, [1000]);
  assert.equal(clock.timers.size, 0);
  assert.equal(p.inFlight, null);
});

test("reset forgets the frame in flight and the gap: the next frame goes at once", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { minGapMs: 5000 });
  p.start();
  await clock.advance(10);
  assert.notEqual(p.inFlight, null);
  p.reset(); // the connection came back: frame 1 will never be answered
  await clock.advance(0);
  assert.deepEqual(sent, [
    [1, 1000],
    [2, 1010],
  ]);
});

test("stop then start resumes pacing", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, { mode: "interval", intervalMs: 1000 });
  p.start();
  await clock.advance(0);
  p.stop();
  assert.equal(p.running, false);
  await clock.advance(5000);
  assert.equal(sent.length, 1);
  p.start();
  await clock.advance(0);
  assert.deepEqual(sent.at(-1), [2, 6000]);
});

test("a pacer never configured paces live", async (t) => {
  const clock = new FakeClock(t);
  const sent = [];
  const p = new Pacer(async () => {
    sent.push(clock.now);
    return sent.length;
  });
  p.start();
  await clock.advance(10_000);
  assert.deepEqual(sent, [1000], "waits for the caption of its first frame");
});

test("a stopped pacer arms no timer, whatever it is told", async (t) => {
  const clock = new FakeClock(t);
  const { p, sent } = pacer(clock, {});
  p.start();
  await clock.advance(0);
  p.stop();
  p.configure({ mode: "interval", minGapMs: 0, intervalMs: 1000 });
  p.done(1);
  p.reset();
  assert.equal(clock.timers.size, 0);
  await clock.advance(10_000);
  assert.equal(sent.length, 1);
});

test("stopped during a live send: nothing in flight, no retry armed", async (t) => {
  const clock = new FakeClock(t);
  for (const answer of [5, null]) {
    let release;
    const p = new Pacer(
      () =>
        new Promise((resolve) => {
          release = resolve;
        }),
    );
    p.configure({ mode: "live", minGapMs: 0, intervalMs: 1000 });
    p.start();
    await clock.advance(0);
    p.stop();
    release(answer);
    await settle();
    assert.equal(p.inFlight, null, `answer ${answer}`);
    assert.equal(clock.timers.size, 0, `answer ${answer}`);
  }
});

test("a reset during a send does not start a second one", async (t) => {
  const clock = new FakeClock(t);
  let calls = 0;
  const p = new Pacer(() => {
    calls += 1;
    return new Promise(() => {}); // never answered: the send stays in progress
  });
  p.configure({ mode: "interval", minGapMs: 0, intervalMs: 1000 });
  p.start();
  await clock.advance(0);
  p.reset(); // the connection dropped and came back mid-send
  await clock.advance(5000);
  assert.equal(calls, 1);
});

test("from live to interval, a frame still in flight does not hold the interval back", async (t) => {
  const clock = new FakeClock(t);
  clock.now = 500_000; // long after the page opened
  const warnings = [];
  t.mock.method(console, "warn", (message) => warnings.push(message));
  const { p, sent } = pacer(clock, {});
  p.start();
  await clock.advance(0);
  p.configure({ mode: "interval", minGapMs: 0, intervalMs: 1000 });
  await clock.advance(2000);
  assert.deepEqual(
    sent.map(([, at]) => at),
    [500_000, 501_000, 502_000],
  );
  assert.deepEqual(warnings, [], "frame 1 is not stalled: it left a second ago");
});
