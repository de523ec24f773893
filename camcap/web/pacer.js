// When to send the next frame.
//
// "live": the model sets the pace. The next frame is captured only once the previous caption is
// final (plus an optional minimum gap), so at most one frame is in flight and every caption
// describes the freshest picture the model could have seen.
// "interval": one frame every N seconds whatever the model does; if the model is slower, the
// server keeps only the newest waiting frame and reports the others as skipped.

// A frame whose caption never comes (lost in a reconnect, dropped by the server) must not stop
// the loop forever. Generous, because a big model on a CPU can take tens of seconds per caption.
const STALL_MS = 120_000;
// How soon to try again when a frame could not be sent (no picture yet, not connected).
const RETRY_MS = 250;
// After an "unchanged" answer (the scene did not change, so the model did nothing) look again
// after this long rather than at once: a still scene then costs ~10 frames a second instead of as
// many as the page can encode, and a change is still seen within this plus one caption.
const UNCHANGED_GAP_MS = 100;

export class Pacer {
  /**
   * @param {() => Promise<number | null>} sendFrame captures and sends one frame; resolves to its
   *   sequence number, or null if nothing could be sent right now
   */
  constructor(sendFrame) {
    this.sendFrame = sendFrame;
    this.mode = "live";
    this.minGapMs = 0;
    this.intervalMs = 3000;
    this.running = false;
    this.sending = false;
    /** @type {{seq: number, since: number} | null} */
    this.inFlight = null;
    this.lastSentAt = -Infinity;
    /** In live mode, no frame before this time (performance.now()): set by an "unchanged" answer. */
    this.holdUntil = 0;
    this.timer = 0;
  }

  /** @param {{mode: "live" | "interval", minGapMs: number, intervalMs: number}} options */
  configure({ mode, minGapMs, intervalMs }) {
    this.mode = mode;
    this.minGapMs = Math.max(0, minGapMs);
    this.intervalMs = Math.max(200, intervalMs);
    this.#schedule();
  }

  start() {
    this.running = true;
    this.#schedule();
  }

  stop() {
    this.running = false;
    this.inFlight = null;
    clearTimeout(this.timer);
  }

  /**
   * The frame `seq` got its final caption, an error, or `unchanged` (the server answered without
   * captioning it): the model is free for the next one.
   * @param {number} seq
   * @param {{unchanged?: boolean}} [how]
   */
  done(seq, { unchanged = false } = {}) {
    // Any later-or-equal seq also frees the slot: the server may answer only the newest frame.
    if (this.inFlight && seq >= this.inFlight.seq) {
      this.inFlight = null;
      this.holdUntil = unchanged ? performance.now() + UNCHANGED_GAP_MS : 0;
      this.#schedule();
    }
  }

  /** The connection dropped or came back: whatever was in flight will never be answered. */
  reset() {
    this.inFlight = null;
    this.lastSentAt = -Infinity;
    this.#schedule();
  }

  #schedule() {
    clearTimeout(this.timer);
    if (!this.running) return;
    const now = performance.now();
    let due;
    if (this.mode === "live") {
      due = this.inFlight
        ? this.inFlight.since + STALL_MS
        : Math.max(this.lastSentAt + this.minGapMs, this.holdUntil);
    } else {
      due = this.lastSentAt + this.intervalMs;
    }
    this.timer = setTimeout(() => this.#tick(), Math.max(0, due - now));
  }

  async #tick() {
    if (!this.running || this.sending) return;
    if (this.inFlight && performance.now() - this.inFlight.since >= STALL_MS) {
      console.warn(`camcap: no caption for frame ${this.inFlight.seq} after ${STALL_MS / 1000} s; sending a new one`);
      this.inFlight = null;
    }
    if (this.mode === "live" && this.inFlight) return this.#schedule();
    this.sending = true;
    let seq = null;
    try {
      seq = await this.sendFrame();
    } catch (error) {
      console.error("camcap: could not send a frame", error);
    } finally {
      this.sending = false;
    }
    if (!this.running) return;
    if (seq === null) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.#tick(), RETRY_MS);
      return;
    }
    this.lastSentAt = performance.now();
    if (this.mode === "live") this.inFlight = { seq, since: this.lastSentAt };
    this.#schedule();
  }
}
