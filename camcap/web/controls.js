// The settings panel: reads the user's choices, remembers them across visits (localStorage, on
// this machine only), and greys out what the loaded model cannot do.

const STORAGE_KEY = "camcap.settings.v1";
/** The picker's value for a server camera: "source:" and its name (device ids never start so). */
const SOURCE_PREFIX = "source:";

/**
 * @typedef {{
 *   deviceId: string, mirror: boolean, pacing: "live" | "interval", minGap: number, interval: number,
 *   quality: number, task: "caption" | "query" | "detect" | "point", length: "short" | "normal" | "long",
 *   question: string, target: string,
 * }} Settings
 */

/** @type {Settings} */
const DEFAULTS = {
  deviceId: "",
  mirror: true,
  pacing: "live",
  minGap: 0,
  interval: 3,
  quality: 0.8,
  task: "caption",
  length: "normal",
  question: "",
  target: "",
};

/** The tasks the form offers, and how to say that a model cannot do one. */
const TASKS = {
  caption: "describe scenes",
  query: "answer questions",
  detect: "find objects",
  point: "point at objects",
};

const $ = (id) => document.getElementById(id);

export class Controls extends EventTarget {
  constructor() {
    super();
    this.form = $("settings");
    this.button = $("settings-btn");
    this.fields = {
      camera: $("camera-select"),
      task: $("task-select"),
      length: $("length-select"),
      question: $("question-input"),
      target: $("target-input"),
      pacing: $("pacing-select"),
      minGap: $("min-gap-input"),
      interval: $("interval-input"),
      quality: $("quality-input"),
    };
    this.settings = { ...DEFAULTS, ...load() };
    /** @type {HTMLOptGroupElement | null} the server's cameras in the picker */
    this.sourceGroup = null;
    this.#fill();
    this.#wire();
  }

  /** @returns {{type: "config", task: string, length?: string, question?: string, target?: string} | null}
   *  the config message for the current task, or null while a question or object is still empty */
  configMessage() {
    const { task, length, question, target } = this.settings;
    if (task === "query") {
      const text = question.trim();
      return text ? { type: "config", task: "query", question: text } : null;
    }
    if (task === "detect" || task === "point") {
      const name = target.trim();
      return name ? { type: "config", task, target: name } : null;
    }
    return { type: "config", task: "caption", length };
  }

  /** Disable what the model does not support, and switch away from it if it was chosen. */
  setSupportedTasks(tasks) {
    const supported = new Set(tasks ?? ["caption"]);
    const hint = $("task-hint");
    for (const option of this.fields.task.options) option.disabled = !supported.has(option.value);
    this.fields.length.disabled = !supported.has("caption");
    this.fields.question.disabled = !supported.has("query");
    this.fields.target.disabled = !supported.has("detect") && !supported.has("point");
    const missing = Object.keys(TASKS).filter((task) => !supported.has(task));
    hint.hidden = missing.length === 0;
    hint.textContent = missing.length ? `This model cannot ${listed(missing.map((task) => TASKS[task]))}.` : "";
    if (!supported.has(this.settings.task)) {
      const fallback = Object.keys(TASKS).find((task) => supported.has(task));
      if (fallback) {
        this.fields.task.value = fallback;
        this.#update({ task: fallback });
      }
    }
  }

  /** Fill the camera picker. Keeps the current choice when that camera is still there. */
  setCameras(devices, activeId) {
    const select = this.fields.camera;
    const wanted = select.value.startsWith(SOURCE_PREFIX) ? select.value : activeId || this.settings.deviceId;
    select.replaceChildren(new Option("Default camera", ""));
    // Before access is granted once, browsers hide ids and labels: only "Default camera" is offered.
    devices
      .filter((device) => device.deviceId)
      .forEach((device, index) => select.add(new Option(device.label || `Camera ${index + 1}`, device.deviceId)));
    if (this.sourceGroup) select.add(this.sourceGroup);
    const offered = [...select.options].some((option) => option.value === wanted);
    select.value = offered ? wanted : "";
  }

  /**
   * List the server's cameras beside the browser's (`GET /v1/sources`); choosing one fires
   * "source" (grid.js shows it) instead of "camera". `chosen`: the one on screen, if any.
   * @param {string[]} names @param {string | null} chosen
   */
  setSources(names, chosen = null) {
    const select = this.fields.camera;
    const browserChoice = select.value.startsWith(SOURCE_PREFIX) ? this.settings.deviceId : select.value;
    // Rebuilt only when the list changed: an open picker is not redrawn under the user's finger.
    const listed = [...(this.sourceGroup?.children ?? [])].map((option) => option.label);
    if (listed.join("\n") !== names.join("\n")) {
      this.sourceGroup?.remove();
      this.sourceGroup = null;
    }
    if (names.length && !this.sourceGroup) {
      this.sourceGroup = document.createElement("optgroup");
      this.sourceGroup.label = "Server cameras";
      for (const name of names) this.sourceGroup.append(new Option(name, SOURCE_PREFIX + name));
      select.add(this.sourceGroup);
    }
    const wanted = chosen !== null && names.includes(chosen) ? SOURCE_PREFIX + chosen : browserChoice;
    select.value = [...select.options].some((option) => option.value === wanted) ? wanted : "";
  }

  setMirror(mirror) {
    this.#update({ mirror });
  }

  open() {
    this.form.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.fields.camera.focus();
  }

  close({ returnFocus = true } = {}) {
    if (this.form.hidden) return;
    this.form.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (returnFocus) this.button.focus();
  }

  #fill() {
    const s = this.settings;
    const f = this.fields;
    // A remembered value the form no longer offers (an older version's) falls back to the default.
    for (const [key, select] of [
      ["task", f.task],
      ["length", f.length],
      ["pacing", f.pacing],
    ]) {
      select.value = s[key];
      if (select.value !== s[key]) s[key] = select.value = DEFAULTS[key];
    }
    f.question.value = String(s.question ?? "");
    f.target.value = String(s.target ?? "");
    f.minGap.value = String(s.minGap);
    f.interval.value = String(s.interval);
    f.quality.value = String(s.quality);
    s.minGap = number(f.minGap, DEFAULTS.minGap);
    s.interval = number(f.interval, DEFAULTS.interval);
    s.quality = number(f.quality, DEFAULTS.quality);
    s.mirror = s.mirror !== false;
    this.#showDependentFields();
  }

  #wire() {
    const f = this.fields;
    this.button.addEventListener("click", () => (this.form.hidden ? this.open() : this.close()));
    $("settings-close").addEventListener("click", () => this.close());
    this.form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    // Enter in the question field applies the question instead of submitting (reloading) the page.
    this.form.addEventListener("submit", (event) => event.preventDefault());

    f.camera.addEventListener("change", () => {
      // A server camera is shown, not opened: the browser camera remembered stays as it was.
      if (f.camera.value.startsWith(SOURCE_PREFIX)) {
        this.dispatchEvent(new CustomEvent("source", { detail: f.camera.value.slice(SOURCE_PREFIX.length) }));
      } else this.#update({ deviceId: f.camera.value }, "camera");
    });
    f.task.addEventListener("change", () => this.#update({ task: f.task.value }, "task"));
    f.length.addEventListener("change", () => this.#update({ length: f.length.value }, "task"));
    // "change" fires on Enter or when focus leaves: one config per finished question, not per key.
    f.question.addEventListener("change", () => this.#update({ question: f.question.value }, "task"));
    f.target.addEventListener("change", () => this.#update({ target: f.target.value }, "task"));
    f.pacing.addEventListener("change", () => this.#update({ pacing: f.pacing.value }, "pacing"));
    f.minGap.addEventListener("change", () => this.#update({ minGap: number(f.minGap, DEFAULTS.minGap) }, "pacing"));
    f.interval.addEventListener("change", () =>
      this.#update({ interval: number(f.interval, DEFAULTS.interval) }, "pacing"),
    );
    f.quality.addEventListener("input", () => this.#update({ quality: number(f.quality, DEFAULTS.quality) }));
  }

  #update(changes, what = null) {
    Object.assign(this.settings, changes);
    this.#showDependentFields();
    save(this.settings);
    if (what) this.dispatchEvent(new CustomEvent(what, { detail: this.settings }));
  }

  #showDependentFields() {
    const s = this.settings;
    $("length-field").hidden = s.task !== "caption";
    $("question-field").hidden = s.task !== "query";
    $("target-field").hidden = s.task !== "detect" && s.task !== "point";
    $("min-gap-field").hidden = s.pacing !== "live";
    $("interval-field").hidden = s.pacing !== "interval";
    $("quality-output").value = Number(s.quality).toFixed(2);
  }
}

/** "a", "a or b", "a, b or c" */
function listed(items) {
  return items.length > 1 ? `${items.slice(0, -1).join(", ")} or ${items.at(-1)}` : items.join("");
}

function number(input, fallback) {
  const value = input.valueAsNumber;
  if (!Number.isFinite(value)) return fallback;
  return Math.min(Math.max(value, Number(input.min) || 0), Number(input.max) || Infinity);
}

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "{}");
    // Only known keys, so an old or tampered entry cannot inject anything unexpected.
    return Object.fromEntries(Object.entries(saved).filter(([key]) => key in DEFAULTS));
  } catch {
    return {};
  }
}

function save(settings) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
  } catch {
    // Storage can be unavailable (private mode, disabled): settings then last for this visit only.
  }
}
