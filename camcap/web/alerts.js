// What an alert does on the page: a banner, a short sound, a system notification when the user
// allowed them, and a mark on the History entry it was about.
//
// The server sends `{"type": "alert", "rule", "camera", "state": "triggered" | "cleared", "at",
// "answer" | "caption"}` on the page's socket for the rules that watch its camera (the camera of
// the page's own stream is its `stream_id`). The sound and notification choices are remembered
// on this machine (localStorage), like the other settings; notifications are asked for only when
// the user turns "Notify me" on, as browsers require a user gesture for that.

import { loadSaved, save } from "./saved.js";

const STORAGE_KEY = "camcap.alerts.v1";
const DEFAULTS = { sound: true, notify: false };
/** A cleared alert's banner says so for this long, then goes. */
const CLEARED_BANNER_MS = 8_000;

/**
 * @typedef {{
 *   type: "alert", rule: string, camera: string, state: "triggered" | "cleared", at?: string,
 *   answer?: string | null, caption?: string | null,
 * }} AlertEvent
 */

export class Alerts extends EventTarget {
  /**
   * @param {{
   *   banner: HTMLElement,
   *   history?: import("./history.js").CaptionHistory | null,
   *   storage?: Storage | null,
   *   NotificationClass?: typeof Notification | null,
   *   AudioContextClass?: typeof AudioContext | null,
   * }} options the browser's own APIs by default; injectable for tests
   */
  constructor({
    banner,
    history = null,
    storage = globalThis.localStorage ?? null,
    NotificationClass = globalThis.Notification ?? null,
    AudioContextClass = globalThis.AudioContext ?? globalThis.webkitAudioContext ?? null,
  }) {
    super();
    this.banner = banner;
    this.history = history;
    this.storage = storage;
    this.NotificationClass = NotificationClass;
    this.AudioContextClass = AudioContextClass;
    this.settings = { ...DEFAULTS, ...loadSaved(this.storage, STORAGE_KEY, DEFAULTS) };
    /** The camera name of this page's own stream (its stream_id), once the server said it. */
    this.streamId = null;
    /** @type {AudioContext | null} made on the first user gesture: browsers keep it mute before one */
    this.audio = null;
    /** @type {Map<string, HTMLElement>} rule + camera -> its banner item */
    this.items = new Map();
    const unlock = () => this.#unlockAudio();
    document.addEventListener("pointerdown", unlock, { once: true, capture: true });
    document.addEventListener("keydown", unlock, { once: true, capture: true });
  }

  /** "this camera" for the page's own stream, else the camera's name ("*": every camera). */
  cameraLabel(camera) {
    if (camera === "*") return "all cameras";
    return camera === this.streamId ? "this camera" : String(camera);
  }

  /** Whether the browser can show notifications at all. */
  get canNotify() {
    return Boolean(this.NotificationClass);
  }

  /**
   * @param {AlertEvent} event
   * @param {import("./history.js").CaptionHistory | null} history the camera's History to mark
   *   (a server camera's own, for alerts from `WS /v1/sources/stream`); the webcam's by default
   */
  handle(event, history = this.history) {
    if (!event?.rule || (event.state !== "triggered" && event.state !== "cleared")) return;
    this.#showBanner(event);
    history?.mark({
      rule: event.rule,
      camera: event.camera,
      state: event.state,
      at: Date.parse(event.at ?? "") || Date.now(),
      text: event.caption ?? event.answer ?? "",
    });
    if (event.state === "triggered") {
      if (this.settings.sound) this.beep();
      if (this.settings.notify) this.#notify(event);
    }
    this.dispatchEvent(new CustomEvent("alert", { detail: event }));
  }

  /** Two short tones through WebAudio (no sound file to download). */
  beep() {
    const context = this.#audioContext();
    if (!context) return;
    const start = context.currentTime + 0.01;
    for (const offset of [0, 0.2]) {
      const tone = context.createOscillator();
      const gain = context.createGain();
      tone.type = "sine";
      tone.frequency.value = 880;
      // A quick fade in and out: a bare on/off tone clicks.
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.15);
      tone.connect(gain).connect(context.destination);
      tone.start(start + offset);
      tone.stop(start + offset + 0.16);
    }
  }

  /**
   * Turn notifications on or off. Turning them on asks the browser's permission, so call it from a
   * user gesture (the toggle's change). @returns {Promise<string>} why they are off, or "" when on
   */
  async setNotify(wanted) {
    if (!wanted) {
      this.update({ notify: false });
      return "";
    }
    if (!this.NotificationClass) {
      this.update({ notify: false });
      return "This browser cannot show notifications.";
    }
    let permission = this.NotificationClass.permission;
    if (permission === "default") permission = await this.NotificationClass.requestPermission();
    if (permission !== "granted") {
      this.update({ notify: false });
      return "Notifications are blocked for this page: allow them in the browser's site settings, then turn this on again.";
    }
    this.update({ notify: true });
    return "";
  }

  /** @param {Partial<typeof DEFAULTS>} changes */
  update(changes) {
    Object.assign(this.settings, changes);
    save(this.storage, STORAGE_KEY, this.settings);
  }

  /** @param {AlertEvent} event */
  #showBanner(event) {
    const key = JSON.stringify([event.rule, event.camera]);
    let item = this.items.get(key);
    if (event.state === "cleared" && !item) return; // dismissed already: nothing to update
    if (!item) {
      item = this.#bannerItem(key, event.rule);
      this.items.set(key, item);
      this.banner.prepend(item);
    }
    clearTimeout(item.clearTimer);
    item.dataset.state = event.state;
    const [title, detail] = item.querySelectorAll("p");
    const where = this.cameraLabel(event.camera);
    title.textContent =
      event.state === "triggered" ? `Alert: ${event.rule} (${where})` : `Cleared: ${event.rule} (${where})`;
    // textContent, never innerHTML: the answer or caption is model output.
    const said = event.answer ? `Answer: ${event.answer}` : event.caption ? `Caption: ${event.caption}` : "";
    detail.textContent = said;
    detail.hidden = !said;
    this.banner.hidden = false;
    if (event.state === "cleared") item.clearTimer = setTimeout(() => this.#dismiss(key), CLEARED_BANNER_MS);
  }

  #bannerItem(key, rule) {
    const item = document.createElement("div");
    // role="alert": a screen reader reads it out as it appears (and again as it changes).
    item.setAttribute("role", "alert");
    item.className = "alert-item";
    const text = document.createElement("div");
    text.className = "alert-item-text";
    const title = document.createElement("p");
    title.className = "alert-item-title";
    const detail = document.createElement("p");
    detail.className = "alert-item-detail";
    text.append(title, detail);
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "btn btn-small";
    dismiss.textContent = "Dismiss";
    dismiss.setAttribute("aria-label", `Dismiss the alert ${rule}`);
    dismiss.addEventListener("click", () => this.#dismiss(key));
    item.append(text, dismiss);
    return item;
  }

  #dismiss(key) {
    const item = this.items.get(key);
    if (!item) return;
    clearTimeout(item.clearTimer);
    item.remove();
    this.items.delete(key);
    this.banner.hidden = this.items.size === 0;
  }

  /** @param {AlertEvent} event */
  #notify(event) {
    const Notify = this.NotificationClass;
    if (!Notify || Notify.permission !== "granted") return;
    const where = this.cameraLabel(event.camera);
    const said = event.answer ? `Answer: ${event.answer}` : (event.caption ?? "");
    try {
      // One notification per rule and camera: a new one replaces the previous (tag).
      new Notify(`camcap alert: ${event.rule}`, {
        body: `${where}${said ? ` — ${said}` : ""}`,
        tag: `camcap-${event.rule}-${event.camera}`,
      });
    } catch (error) {
      // Android's Chrome allows notifications only from a service worker: the banner still shows.
      console.warn("camcap: could not show a notification", error);
    }
  }

  #audioContext() {
    if (!this.AudioContextClass) return null;
    try {
      this.audio ??= new this.AudioContextClass();
    } catch {
      return null;
    }
    if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
    return this.audio;
  }

  #unlockAudio() {
    // A context made (or resumed) during a user gesture may play later, when an alert arrives.
    if (this.settings.sound) this.#audioContext();
  }

}

/**
 * Wire the Settings panel's alert fields ("Play a sound", "Notify me") to `alerts`.
 * @param {Alerts} alerts
 */
export function bindAlertSettings(alerts, $ = (id) => document.getElementById(id)) {
  const sound = $("alert-sound-toggle");
  const notify = $("alert-notify-toggle");
  const hint = $("alert-notify-hint");
  const say = (text) => {
    hint.textContent = text;
    hint.hidden = !text;
  };
  sound.checked = alerts.settings.sound;
  // Remembered "on" holds only while the browser still grants the permission.
  notify.checked = alerts.settings.notify && alerts.NotificationClass?.permission === "granted";
  if (!alerts.canNotify) {
    notify.disabled = true;
    say("This browser cannot show notifications.");
  }
  sound.addEventListener("change", () => {
    alerts.update({ sound: sound.checked });
    if (sound.checked) alerts.beep(); // a sample, and this gesture lets the page play sound later
  });
  notify.addEventListener("change", async () => {
    const problem = await alerts.setNotify(notify.checked);
    notify.checked = alerts.settings.notify;
    say(problem);
  });
}
