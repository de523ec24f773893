// Spoken captions: the browser's own speech synthesis reads each finished caption aloud.
//
// Freshness holds for speech too: a newer caption cancels one still being read, so the voice
// never falls behind the picture. A caption identical to the last one spoken is not read again
// (a still scene would otherwise repeat itself). Off by default; the choice, the voice and the
// rate are remembered on this machine (localStorage), like the other settings.
//
// Screen readers: while speech is on, finished captions are no longer written to the page's ARIA
// live region (app.js asks `announces`), so a screen-reader user who turns it on hears each caption
// once, in this voice, instead of twice at the same time; with speech off (the default) the live
// region announces them as before.

import { loadSaved, save } from "./saved.js";

const STORAGE_KEY = "camcap.speech.v1";
const DEFAULTS = { enabled: false, voice: "", rate: 1 };

export class Speaker {
  /**
   * @param {{synth?: SpeechSynthesis | null, Utterance?: typeof SpeechSynthesisUtterance, storage?: Storage | null}} options
   *   injectable for tests; the browser's own by default
   */
  constructor({
    synth = globalThis.speechSynthesis ?? null,
    Utterance = globalThis.SpeechSynthesisUtterance,
    storage = globalThis.localStorage ?? null,
  } = {}) {
    this.synth = synth;
    this.Utterance = Utterance;
    this.storage = storage;
    this.settings = { ...DEFAULTS, ...loadSaved(this.storage, STORAGE_KEY, DEFAULTS) };
    /** The text last handed to the synthesiser, so an unchanged caption is not read twice. */
    this.lastSpoken = null;
  }

  /** False where the browser has no speech synthesis. */
  get available() {
    return Boolean(this.synth && this.Utterance);
  }

  /** Whether finished captions should go to the ARIA live region (not while they are spoken). */
  get announces() {
    return !(this.settings.enabled && this.available);
  }

  /** @returns {{voiceURI: string, name: string, lang: string, default?: boolean}[]} */
  voices() {
    return this.synth?.getVoices?.() ?? [];
  }

  /**
   * Read a finished caption, cancelling whatever is still being read.
   * @returns {boolean} whether it was handed to the synthesiser
   */
  say(text) {
    if (!this.settings.enabled || !this.available) return false;
    const clean = String(text ?? "").trim();
    if (!clean || clean === this.lastSpoken) return false;
    this.lastSpoken = clean;
    if (this.synth.speaking || this.synth.pending) this.synth.cancel();
    const utterance = new this.Utterance(clean);
    utterance.rate = this.settings.rate;
    const voice = this.voices().find((v) => v.voiceURI === this.settings.voice);
    if (voice) {
      utterance.voice = voice;
      utterance.lang = voice.lang;
    }
    this.synth.speak(utterance);
    return true;
  }

  /** @param {Partial<typeof DEFAULTS>} changes */
  update(changes) {
    Object.assign(this.settings, changes);
    this.settings.rate = Math.min(Math.max(Number(this.settings.rate) || 1, 0.5), 2);
    if (!this.settings.enabled) this.stop();
    save(this.storage, STORAGE_KEY, this.settings);
  }

  /** Stop reading now (speech turned off, camera stopped). The next caption is read afresh. */
  stop() {
    this.lastSpoken = null;
    if (this.synth && (this.synth.speaking || this.synth.pending)) this.synth.cancel();
  }


}

/**
 * Wire the Settings panel's speech fields to `speaker`.
 * @param {Speaker} speaker
 */
export function bindSpeechControls(speaker, $ = (id) => document.getElementById(id)) {
  const toggle = $("speak-toggle");
  const voice = $("voice-select");
  const rate = $("rate-input");
  const rateOutput = $("rate-output");
  const hint = $("speech-hint");

  const fillVoices = () => {
    const voices = speaker.voices();
    voice.replaceChildren(new Option("Browser default", ""));
    for (const v of voices) voice.add(new Option(`${v.name} (${v.lang})`, v.voiceURI));
    voice.value = voices.some((v) => v.voiceURI === speaker.settings.voice) ? speaker.settings.voice : "";
  };
  const show = () => {
    toggle.checked = speaker.settings.enabled;
    rate.value = String(speaker.settings.rate);
    rateOutput.value = `${Number(speaker.settings.rate).toFixed(1)}×`;
    voice.disabled = rate.disabled = !speaker.settings.enabled;
  };

  if (!speaker.available) {
    toggle.disabled = true;
    hint.hidden = false;
    hint.textContent = "This browser cannot speak (no speech synthesis).";
  }
  fillVoices();
  // Voices load asynchronously in Chromium: the list fills in when they arrive.
  speaker.synth?.addEventListener?.("voiceschanged", fillVoices);
  show();
  toggle.addEventListener("change", () => {
    speaker.update({ enabled: toggle.checked });
    show();
  });
  voice.addEventListener("change", () => speaker.update({ voice: voice.value }));
  rate.addEventListener("input", () => {
    speaker.update({ rate: rate.valueAsNumber });
    show();
  });
}
