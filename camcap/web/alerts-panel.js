// The Alerts panel: the server's rules with their state, and a form to add one; each rule can be
// enabled, disabled or removed. Rules live on the server (GET/PUT/PATCH/DELETE /v1/rules), so a
// rule keeps watching when this page is closed, and every page sees the same ones.
//
// The list is kept in step rule by rule (one element per rule, reused), so the refresh while the
// panel is open never replaces a checkbox or button under the user's keyboard.

import { RulesError } from "./alerts-api.js";

/** While the panel is open, rules are read again this often: states change on other cameras too. */
const REFRESH_MS = 5_000;

export class AlertsPanel {
  /**
   * @param {HTMLElement} root the panel (`#alerts` in index.html)
   * @param {import("./alerts-api.js").RulesApi} api
   * @param {import("./alerts.js").Alerts} alerts names cameras, and reports alerts as they come
   * @param {{button?: HTMLElement | null}} options
   */
  constructor(root, api, alerts, { button = null } = {}) {
    this.root = root;
    this.api = api;
    this.alerts = alerts;
    this.button = button;
    this.list = root.querySelector("[data-role=list]");
    this.empty = root.querySelector("[data-role=empty]");
    this.message = root.querySelector("[data-role=message]");
    this.form = root.querySelector("form");
    /** @type {import("./alerts-api.js").Rule[]} */
    this.rules = [];
    /** @type {Map<string, HTMLLIElement>} rule name -> its element */
    this.items = new Map();
    this.timer = null;
    /** Whether the last read of the rules failed (a background refresh repeats no error). */
    this.failed = false;

    button?.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    root.querySelector("[data-action=close]").addEventListener("click", () => this.close());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#add();
    });
    this.form.elements.kind.addEventListener("change", () => this.#showKind());
    this.list.addEventListener("click", (event) => this.#onClick(event));
    this.list.addEventListener("change", (event) => this.#onToggle(event));
    alerts.addEventListener("alert", ({ detail }) => this.#onAlert(detail));
    this.#showKind();
  }

  get isOpen() {
    return !this.root.hidden;
  }

  open() {
    this.root.hidden = false;
    this.button?.setAttribute("aria-expanded", "true");
    this.root.querySelector("h2")?.focus();
    this.refresh();
    this.timer = setInterval(() => this.refresh({ quiet: true }), REFRESH_MS);
  }

  close({ returnFocus = true } = {}) {
    if (!this.isOpen) return;
    this.root.hidden = true;
    clearInterval(this.timer);
    this.button?.setAttribute("aria-expanded", "false");
    if (returnFocus) this.button?.focus();
  }

  /** Read the rules again. `quiet`: a background refresh, which only speaks up on a new failure. */
  async refresh({ quiet = false } = {}) {
    try {
      this.rules = await this.api.list();
      if (quiet && this.failed) this.#say("");
      this.failed = false;
    } catch (error) {
      if (!quiet || !this.failed) this.#say(messageOf(error), "error");
      this.failed = true;
      return;
    }
    this.#render();
  }

  async #add() {
    const f = this.form.elements;
    const name = f.name.value.trim();
    const text = f.text.value.trim();
    const kind = f.kind.value;
    if (!name) return this.#invalid(f.name, "Give the rule a name.");
    if (!text) {
      return this.#invalid(
        f.text,
        kind === "question" ? "Type a yes/no question, e.g. Is there a person at the door?" : "Type the words to look for.",
      );
    }
    let cameras;
    if (f.cameras.value === "this") {
      if (!this.alerts.streamId) {
        return this.#invalid(f.cameras[0], "This camera is not connected yet: wait for Connected, or choose All cameras.");
      }
      cameras = [this.alerts.streamId];
    } else {
      cameras = ["*"];
    }
    /** @type {Record<string, unknown>} */
    const rule = { cameras, [kind]: text, enabled: true };
    // Left empty, K and the cooldown take the server's defaults.
    if (f.k.value !== "") rule.k = f.k.valueAsNumber;
    if (f.cooldown.value !== "") rule.cooldown_s = f.cooldown.valueAsNumber;
    const replacing = this.rules.some((r) => r.name === name);
    try {
      await this.api.put(name, rule);
    } catch (error) {
      this.#say(messageOf(error), "error");
      return;
    }
    f.name.value = "";
    f.text.value = "";
    this.#say(replacing ? `Rule "${name}" replaced.` : `Rule "${name}" added.`);
    await this.refresh();
  }

  async #onClick(event) {
    const button = event.target.closest("button[data-action=remove]");
    if (!button) return;
    const name = button.closest("li").dataset.name;
    try {
      await this.api.remove(name);
      this.#say(`Rule "${name}" removed.`);
    } catch (error) {
      this.#say(messageOf(error), "error");
    }
    await this.refresh();
    // The button went with its rule: keep the keyboard in the panel.
    if (!this.root.contains(document.activeElement)) this.root.querySelector("h2")?.focus();
  }

  async #onToggle(event) {
    const box = event.target.closest("input[data-action=enable]");
    if (!box) return;
    const name = box.closest("li").dataset.name;
    try {
      await this.api.setEnabled(name, box.checked);
      this.#say(`Rule "${name}" ${box.checked ? "enabled" : "disabled"}.`);
    } catch (error) {
      box.checked = !box.checked;
      this.#say(messageOf(error), "error");
    }
    await this.refresh();
  }

  /** An alert came in: its rule's state on that camera is known without asking the server. */
  #onAlert(event) {
    const rule = this.rules.find((r) => r.name === event.rule);
    if (rule) rule.states = { ...rule.states, [event.camera]: event.state === "triggered" ? "triggered" : "clear" };
    if (this.isOpen) this.#render();
  }

  #render() {
    const names = new Set(this.rules.map((r) => r.name));
    for (const [name, item] of this.items) {
      if (!names.has(name)) {
        item.remove();
        this.items.delete(name);
      }
    }
    // In the server's order; existing elements are moved, not rebuilt.
    for (const rule of this.rules) {
      let item = this.items.get(rule.name);
      if (!item) {
        item = this.#item(rule.name);
        this.items.set(rule.name, item);
      }
      this.#fill(item, rule);
      this.list.append(item);
    }
    this.empty.hidden = this.rules.length > 0;
  }

  #item(name) {
    const item = document.createElement("li");
    item.className = "alert-rule";
    item.dataset.name = name;
    const head = document.createElement("p");
    head.className = "alert-rule-head";
    const title = document.createElement("strong");
    title.textContent = name;
    const state = document.createElement("span");
    state.className = "alert-rule-state";
    head.append(title, state);
    const what = document.createElement("p");
    what.className = "alert-rule-what";
    const toggle = document.createElement("label");
    toggle.className = "check";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.dataset.action = "enable";
    box.setAttribute("aria-label", `Enabled: ${name}`);
    toggle.append(box, " Enabled");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "btn btn-small";
    remove.dataset.action = "remove";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${name}`);
    item.append(head, what, toggle, remove);
    return item;
  }

  #fill(item, rule) {
    const state = item.querySelector(".alert-rule-state");
    const triggered = Object.entries(rule.states ?? {})
      .filter(([, s]) => s === "triggered")
      .map(([camera]) => this.alerts.cameraLabel(camera));
    const enabled = rule.enabled !== false;
    state.textContent = !enabled ? "disabled" : triggered.length ? `triggered: ${triggered.join(", ")}` : "clear";
    item.dataset.state = !enabled ? "disabled" : triggered.length ? "triggered" : "clear";
    // textContent, never innerHTML: rules may come from anyone with access.
    const asks = rule.question ? `Asks “${rule.question}”` : `Caption matches “${rule.match ?? ""}”`;
    const cameras = (rule.cameras ?? []).map((c) => this.alerts.cameraLabel(c)).join(", ");
    const pace = [rule.k ? `${rule.k} in a row` : "", rule.cooldown_s != null ? `cooldown ${rule.cooldown_s} s` : ""];
    item.querySelector(".alert-rule-what").textContent = [asks, cameras, ...pace].filter(Boolean).join(" · ");
    const box = item.querySelector("input[data-action=enable]");
    if (document.activeElement !== box || box.checked !== enabled) box.checked = enabled;
  }

  #showKind() {
    const question = this.form.elements.kind.value === "question";
    const text = this.form.elements.text;
    this.root.querySelector("[data-role=text-label]").textContent = question ? "Yes/no question" : "Caption contains";
    text.placeholder = question ? "e.g. Is there a person at the door?" : "words, or /a regular expression/";
  }

  #invalid(field, message) {
    this.#say(message, "error");
    field.focus();
  }

  #say(text, tone = "info") {
    this.message.textContent = text;
    this.message.dataset.tone = tone;
    this.message.hidden = !text;
  }
}

function messageOf(error) {
  return error instanceof RulesError ? error.message : `Something went wrong: ${error?.message ?? error}`;
}
