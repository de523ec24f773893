// A fake clock for the page's timers: setTimeout, clearTimeout and performance.now, moved only by
// the test, so pacing is checked without waiting and without timing.

export class FakeClock {
  constructor(t) {
    this.now = 1000;
    this.timers = new Map(); // id -> {due, fn}
    this.nextId = 1;
    t.mock.method(globalThis, "setTimeout", (fn, ms = 0) => {
      const id = this.nextId++;
      this.timers.set(id, { due: this.now + Math.max(0, Number(ms) || 0), fn });
      return id;
    });
    t.mock.method(globalThis, "clearTimeout", (id) => this.timers.delete(id));
    t.mock.method(performance, "now", () => this.now);
  }

  /** Run every timer due within `ms`, in order, letting promises settle after each. */
  async advance(ms) {
    const end = this.now + ms;
    await settle();
    for (let runs = 0; ; runs++) {
      // A pacer that re-arms a timer for "now" forever would hang the test: fail it instead.
      if (runs > 10_000) throw new Error("timers keep firing without the clock moving");
      const next = [...this.timers.entries()].filter(([, timer]) => timer.due <= end).sort((a, b) => a[1].due - b[1].due)[0];
      if (!next) break;
      const [id, timer] = next;
      this.timers.delete(id);
      this.now = timer.due;
      timer.fn();
      await settle();
    }
    this.now = end;
  }
}

/** Let every pending promise reaction run (the pacer's sendFrame is async). */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
