// The History panel: one camera's finished captions, newest first, with copy, download and clear.
//
// The list is kept in step with the history entry by entry (one element per entry, reused while
// the entry lasts), so an open panel costs a few DOM operations per caption and a focused Copy
// button is not replaced under the user's keyboard.

import { download, entryLine, formatDuration, toText } from "./export.js";

export class HistoryPanel {
  /**
   * @param {HTMLElement} root the panel (`#history` in index.html, or a copy per camera)
   * @param {import("./history.js").CaptionHistory} history
   * @param {{button?: HTMLElement | null, notify?: (message: string) => void}} options
   */
  constructor(root, history, { button = null, notify = () => {} } = {}) {
    this.root = root;
    this.history = history;
    this.button = button;
    this.notify = notify;
    this.list = root.querySelector("[data-role=list]");
    this.empty = root.querySelector("[data-role=empty]");
    /** @type {Map<number, HTMLLIElement>} entry id -> its element */
    this.items = new Map();
    history.addEventListener("change", ({ detail }) => this.#apply(detail));
    root.addEventListener("click", (event) => this.#onClick(event));
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    button?.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    this.#render();
  }

  get isOpen() {
    return !this.root.hidden;
  }

  open() {
    this.root.hidden = false;
    this.button?.setAttribute("aria-expanded", "true");
    this.#render();
    this.root.querySelector("h2")?.focus();
  }

  close({ returnFocus = true } = {}) {
    if (!this.isOpen) return;
    this.root.hidden = true;
    this.button?.setAttribute("aria-expanded", "false");
    if (returnFocus) this.button?.focus();
  }

  async #onClick(event) {
    const target = event.target.closest("button[data-action]");
    if (!target) return;
    const action = target.dataset.action;
    if (action === "close") this.close();
    else if (action === "clear") this.history.clear();
    else if (action === "copy-all") await this.#copy(toText(this.history), "All captions copied.");
    else if (action === "copy") {
      const entry = this.history.entries.find((e) => String(e.id) === target.closest("li")?.dataset.id);
      if (entry) await this.#copy(entryLine(entry), "Caption copied.");
    } else if (action.startsWith("download-")) {
      if (!this.history.entries.length) this.notify("No captions to download yet.");
      else download(this.history, action.slice("download-".length));
    }
  }

  async #copy(text, done) {
    try {
      await navigator.clipboard.writeText(text);
      this.notify(done);
    } catch (error) {
      // No clipboard outside a secure context, or permission refused: say so rather than fail quietly.
      this.notify(`Could not copy (${error?.message ?? "no clipboard"}): select the text and copy it instead.`);
    }
  }

  #apply({ kind, entry, dropped }) {
    if (!this.isOpen) return; // rendered in full when opened
    if (kind === "clear") {
      this.#render();
      return;
    }
    for (const old of dropped) {
      this.items.get(old.id)?.remove();
      this.items.delete(old.id);
    }
    let item = this.items.get(entry.id);
    if (!item) {
      item = this.#item(entry);
      this.items.set(entry.id, item);
      this.list.prepend(item);
    }
    this.#fill(item, entry);
    this.empty.hidden = this.items.size > 0;
  }

  #render() {
    if (!this.isOpen) return;
    this.items.clear();
    const items = this.history.newestFirst().map((entry) => {
      const item = this.#item(entry);
      this.#fill(item, entry);
      this.items.set(entry.id, item);
      return item;
    });
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
  }

  #item(entry) {
    const item = document.createElement("li");
    item.className = "history-entry";
    item.dataset.id = String(entry.id);
    const time = document.createElement("time");
    const repeats = document.createElement("span");
    repeats.className = "history-repeats";
    const text = document.createElement("p");
    text.className = "history-text";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "btn btn-small";
    copy.dataset.action = "copy";
    copy.textContent = "Copy";
    // Alerts raised while this caption was on screen (alerts.js marks them).
    const alerts = document.createElement("p");
    alerts.className = "history-alerts";
    alerts.hidden = true;
    item.append(time, repeats, text, copy, alerts);
    return item;
  }

  #fill(item, entry) {
    const [time, repeats, text, copy, alerts] = item.children;
    const when = new Date(entry.startAt);
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour12: false });
    repeats.textContent = entry.count > 1 ? `×${entry.count} · ${formatDuration(entry.endAt - entry.startAt)}` : "";
    // textContent, never innerHTML: captions are model output.
    text.textContent = entry.label ? `${entry.label} ${entry.text}` : entry.text;
    copy.setAttribute("aria-label", `Copy the caption of ${time.textContent}`);
    const marks = entry.alerts ?? [];
    alerts.hidden = marks.length === 0;
    alerts.textContent = marks.map((a) => `⚠ Alert: ${a.rule} ${a.state}`).join(" · ");
    if (marks.length) item.dataset.alert = marks.at(-1).state;
    else delete item.dataset.alert;
  }
}
