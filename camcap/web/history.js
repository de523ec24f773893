// One camera's finished captions, kept for the History panel and the downloads.
//
// Identical consecutive captions (a still scene) are one entry that lasts; the number of entries
// is bounded, so a page left captioning for hours keeps a flat memory: the oldest entries go first.

/** Entries kept per camera unless told otherwise: about an hour of one caption every 7 s. */
export const DEFAULT_MAX_ENTRIES = 500;
/** Alert marks kept on one entry (a rule flapping on a still scene would otherwise grow it). */
export const MAX_ALERTS_PER_ENTRY = 8;

/**
 * @typedef {{
 *   id: number,
 *   text: string,
 *   label: string | null,
 *   task: string,
 *   startAt: number,
 *   lastAt: number,
 *   endAt: number,
 *   count: number,
 *   alerts: HistoryAlert[],
 * }} HistoryEntry
 * @typedef {{rule: string, camera: string, state: "triggered" | "cleared", at: number}} HistoryAlert
 * Times are ms since the Unix epoch (the page's clock): startAt is the capture time of the first
 * frame this caption described, lastAt that of the latest one, endAt when it was last known to be
 * true (its latest caption finished, or a later frame was found unchanged).
 */

export class CaptionHistory extends EventTarget {
  /** @param {{maxEntries?: number}} options */
  constructor({ maxEntries = DEFAULT_MAX_ENTRIES } = {}) {
    super();
    if (!(maxEntries >= 1)) throw new RangeError(`maxEntries must be at least 1, got ${maxEntries}.`);
    this.maxEntries = maxEntries;
    /** @type {HistoryEntry[]} oldest first */
    this.entries = [];
    /** When the session began (ms since the epoch): subtitle cue times count from here. */
    this.startedAt = null;
    this.nextId = 0;
  }

  /**
   * A finished caption.
   * @param {{text: string, capturedAt?: number | null, finishedAt?: number, task?: string, label?: string | null}} caption
   * @returns {HistoryEntry} the entry it went into (a new one, or the previous one if identical)
   */
  add({ text, capturedAt = null, finishedAt = Date.now(), task = "caption", label = null }) {
    const at = Number.isFinite(capturedAt) ? capturedAt : finishedAt;
    const clean = String(text).trim();
    this.startedAt ??= at;
    const last = this.entries.at(-1);
    if (last && last.text === clean && last.label === label && last.task === task) {
      last.count += 1;
      last.lastAt = Math.max(last.lastAt, at);
      last.endAt = Math.max(last.endAt, finishedAt);
      this.#changed("update", last);
      return last;
    }
    const entry = {
      id: this.nextId++,
      text: clean,
      label,
      task,
      startAt: at,
      lastAt: at,
      endAt: Math.max(at, finishedAt),
      count: 1,
      alerts: [],
    };
    this.entries.push(entry);
    const dropped = this.entries.length > this.maxEntries ? this.entries.splice(0, this.entries.length - this.maxEntries) : [];
    this.#changed("add", entry, dropped);
    return entry;
  }

  /** A frame captured at `at` was found unchanged: the latest caption still held then. */
  stillTrue(at) {
    const last = this.entries.at(-1);
    if (!last || !Number.isFinite(at) || at <= last.endAt) return;
    last.endAt = at;
    this.#changed("update", last);
  }

  /**
   * An alert about what the camera shows now: marked on the latest entry (the caption it was
   * about), or on an entry of its own (the alert's caption or answer) when there is none yet.
   * @param {HistoryAlert & {text?: string}} alert
   */
  mark({ rule, camera, state, at = Date.now(), text = "" }) {
    const entry = this.entries.at(-1) ?? this.add({ text: text || `Alert: ${rule}`, capturedAt: at, task: "alert" });
    entry.alerts.push({ rule, camera, state, at });
    if (entry.alerts.length > MAX_ALERTS_PER_ENTRY) entry.alerts.splice(0, entry.alerts.length - MAX_ALERTS_PER_ENTRY);
    this.#changed("update", entry);
    return entry;
  }

  /** @returns {HistoryEntry[]} newest first, as the panel lists them */
  newestFirst() {
    return this.entries.slice().reverse();
  }

  clear() {
    this.entries = [];
    this.startedAt = null;
    this.#changed("clear", null);
  }

  #changed(kind, entry, dropped = []) {
    this.dispatchEvent(new CustomEvent("change", { detail: { kind, entry, dropped } }));
  }
}
