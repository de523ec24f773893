// A server camera's tile: its newest snapshot (refreshed at a low rate, and only while the tile is
// on screen and the page is visible), its live captions, stats, status and History.

import { CaptionHistory } from "./history.js";
import { HistoryPanel } from "./history-panel.js";
import { formatMs, Tile } from "./tile.js";

/** How often a snapshot on screen is refreshed: a glance at the scene, not a video. */
export const SNAPSHOT_EVERY_MS = 1_500;
const SNAPSHOT_TIMEOUT_MS = 5_000;

export class SourceTile {
  /**
   * @param {string} name the source's name
   * @param {{template: HTMLTemplateElement, panelTemplate: HTMLElement, notify: (message: string) => void,
   *   onPanelOpen: (tile: SourceTile) => void}} parts
   */
  constructor(name, { template, panelTemplate, notify, onPanelOpen }) {
    this.name = name;
    const root = /** @type {HTMLElement} */ (template.content.firstElementChild.cloneNode(true));
    root.dataset.camera = name;
    root.setAttribute("aria-label", `Server camera ${name}`);
    this.root = root;
    this.tile = new Tile(root);
    this.tile.title.textContent = name;
    this.image = root.querySelector("[data-part=snapshot]");
    this.placeholder = root.querySelector("[data-part=placeholder]");
    this.history = new CaptionHistory();
    this.panel = this.#makePanel(panelTemplate, notify, onPanelOpen);
    this.snapshots = 0;
    this.onScreen = false;
    this.timer = null;
    this.retryAt = null;
    this.lastError = null;
    this.status = "waiting";
    this.captioned = 0;
    this.lastCaptionAt = null;
    // Refresh only what someone can see: a tile scrolled out of the grid costs nothing.
    new IntersectionObserver((entries) => {
      this.onScreen = entries.some((entry) => entry.isIntersecting);
      this.#schedule(0);
    }).observe(root);
    document.addEventListener("visibilitychange", () => this.#schedule(0));
  }

  /** The source as GET /v1/sources describes it. @param {import("./sources.js").SourceInfo} info */
  update(info) {
    this.captioned = Math.max(this.captioned, info.captioned ?? 0);
    this.tile.setStats({ captioned: String(this.captioned) });
    this.#setStatus(info.status, info.error);
    const last = info.last_caption;
    // A caption written before the page opened (or while its socket was away): shown as it is.
    // Only a newer one: the list may be read just before a caption that came over the socket.
    const newer = last && (this.lastCaptionAt === null || Date.parse(last.at) > Date.parse(this.lastCaptionAt));
    if (newer && this.tile.caption.box.dataset.streaming !== "true") {
      this.#showCaption(this.tile.captionSeq, last);
    }
  }

  /** An event of WS /v1/sources/stream about this source. */
  event(type, event) {
    if (type === "source_token") this.tile.captionToken(event.seq, event.text);
    else if (type === "source_caption") {
      this.captioned += 1;
      this.tile.setStats({ captioned: String(this.captioned) });
      this.#showCaption(event.seq, event);
      if (this.status !== "up") this.#setStatus("up", null);
    } else if (type === "source_up") this.#setStatus("up", null);
    else if (type === "source_ended") this.#setStatus("ended", event.error);
    else if (type === "source_down") {
      this.retryAt = Number.isFinite(event.retry_in_s) ? Date.now() + event.retry_in_s * 1000 : null;
      this.#setStatus("down", event.error);
    }
  }

  /** The socket is gone: a caption in progress will not finish. */
  interrupted() {
    this.tile.captionInterrupted();
  }

  /** Shown or not (the layout decides); a shown tile refreshes its snapshot at once. */
  setShown(shown) {
    this.tile.setShown(shown);
    if (!shown) this.panel.close({ returnFocus: false });
    this.#schedule(0);
  }

  /** Called every second: a "retrying in N s" must count down. */
  tick() {
    if (this.status === "down") this.#setStatus("down", this.lastError);
  }

  #showCaption(seq, caption) {
    this.lastCaptionAt = caption.at;
    this.tile.captionFinal(seq, caption.text);
    this.tile.setStats({ inference: formatMs(caption.inference_ms), age: formatMs(caption.frame_age_ms) });
    const finishedAt = Date.parse(caption.at);
    this.history.add({
      text: caption.text,
      capturedAt: Number.isFinite(finishedAt) ? finishedAt - (caption.frame_age_ms ?? 0) : null,
      finishedAt: Number.isFinite(finishedAt) ? finishedAt : Date.now(),
      task: caption.task ?? "caption",
    });
  }

  #setStatus(status, error) {
    const changed = status !== this.status;
    this.status = status;
    this.lastError = error ?? null;
    this.root.dataset.status = status;
    const why = error ? `: ${error}` : "";
    if (status === "up") this.tile.setStatus("Live", "ok");
    else if (status === "waiting") this.tile.setStatus("Waiting for the model to load…", "busy");
    else if (status === "connecting") this.tile.setStatus("Connecting…", "busy");
    else if (status === "ended") this.tile.setStatus(`Ended${why}`, "warn");
    else if (status === "stopped") this.tile.setStatus("Stopped", "warn");
    else {
      // Down: the reader retries by itself, less often each time; say why and when.
      const seconds = this.retryAt === null ? null : Math.ceil((this.retryAt - Date.now()) / 1000);
      const next = seconds === null ? "reconnecting" : seconds > 0 ? `retrying in ${seconds} s` : "reconnecting…";
      this.tile.setStatus(`Down${why} · ${next}`, "error");
    }
    if (changed) this.#schedule(0); // back up: show the new picture now
  }

  #makePanel(panelTemplate, notify, onPanelOpen) {
    const element = /** @type {HTMLElement} */ (panelTemplate.cloneNode(true));
    const titleId = `history-title-${this.name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    element.removeAttribute("id");
    element.hidden = true;
    element.setAttribute("aria-labelledby", titleId);
    const title = element.querySelector("h2");
    title.id = titleId;
    title.textContent = `History of ${this.name}`;
    element.querySelector("[data-role=list]").replaceChildren();
    const button = this.root.querySelector("[data-part=history-button]");
    button.setAttribute("aria-label", `History of ${this.name}`);
    button.addEventListener("click", () => {
      if (!panel.isOpen) onPanelOpen(this);
    });
    const panel = new HistoryPanel(element, this.history, { button, notify });
    return panel;
  }

  // --- the snapshot ------------------------------------------------------------------------------

  get #wanted() {
    return this.onScreen && !this.root.hidden && document.visibilityState === "visible";
  }

  #schedule(delayMs) {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.#wanted) this.timer = setTimeout(() => this.#refresh(), delayMs);
  }

  async #refresh() {
    try {
      const url = `/v1/sources/${encodeURIComponent(this.name)}/snapshot.jpg`;
      const response = await fetch(url, { cache: "no-store", signal: AbortSignal.timeout(SNAPSHOT_TIMEOUT_MS) });
      // 503: no frame yet (or the source is down and never had one): the status line says why.
      if (response.ok) this.#show(await response.blob());
    } catch {
      // Unreachable server: the page's connection line says so; try again at the next tick.
    }
    this.#schedule(SNAPSHOT_EVERY_MS);
  }

  #show(blob) {
    const url = URL.createObjectURL(blob);
    const previous = this.image.src;
    this.image.addEventListener(
      "load",
      () => {
        if (previous.startsWith("blob:")) URL.revokeObjectURL(previous); // keep memory flat over hours
      },
      { once: true },
    );
    this.image.src = url;
    this.image.alt = `Latest picture of ${this.name}`;
    this.image.hidden = false;
    this.placeholder.hidden = true;
    this.snapshots += 1;
    this.root.dataset.snapshots = String(this.snapshots);
  }
}
