// Which cameras are on screen: one at a time (the webcam, or a server camera chosen in the camera
// picker), or all of them as a grid. Holds a SourceTile per server camera and keeps the picker,
// the Grid button and the tiles in step. The choice is remembered on this machine.

import { SourceTile } from "./source-tile.js";

const STORAGE_KEY = "camcap.view.v1";
export const WEBCAM = "webcam";
export const GRID = "grid";

export class Layout extends EventTarget {
  /**
   * @param {{tiles: HTMLElement, webcam: import("./tile.js").Tile, template: HTMLTemplateElement,
   *   panelTemplate: HTMLElement, panelParent: HTMLElement, gridButton: HTMLButtonElement,
   *   notify: (message: string) => void, onPanelOpen: () => void}} parts
   */
  constructor({ tiles, webcam, template, panelTemplate, panelParent, gridButton, notify, onPanelOpen }) {
    super();
    this.tiles = tiles;
    this.webcam = webcam;
    this.template = template;
    this.panelTemplate = panelTemplate;
    this.panelParent = panelParent;
    this.gridButton = gridButton;
    this.notify = notify;
    this.onPanelOpen = onPanelOpen;
    /** @type {Map<string, SourceTile>} */
    this.sources = new Map();
    /** Whether the server's list has been read (until then a remembered camera may still exist). */
    this.listed = false;
    /** "webcam", "grid" or "source:NAME" */
    this.view = load();
    gridButton.addEventListener("click", () => this.show(this.view === GRID ? WEBCAM : GRID));
    this.#apply();
  }

  /** The server camera on screen alone, or null (the webcam, or the grid). */
  get source() {
    return this.view.startsWith("source:") ? this.view.slice("source:".length) : null;
  }

  /** Whether the webcam is on screen alone (its notices then take the stage). */
  get webcamAlone() {
    return this.tiles.dataset.layout === "single" && this.source === null;
  }

  /** Whether the webcam's tile is on screen. */
  get showsWebcam() {
    return this.view === WEBCAM || this.view === GRID;
  }

  /** @param {string} view "webcam", "grid" or "source:NAME" */
  show(view) {
    if (view === this.view) return;
    this.view = view;
    save(view);
    this.#apply();
  }

  /** The server's cameras, as GET /v1/sources lists them. */
  setSources(list) {
    this.listed = true;
    const names = new Set(list.map((info) => info.name));
    for (const [name, tile] of this.sources) {
      if (!names.has(name)) {
        tile.root.remove();
        tile.panel.root.remove();
        this.sources.delete(name);
      }
    }
    for (const info of list) {
      let tile = this.sources.get(info.name);
      if (!tile) {
        tile = new SourceTile(info.name, {
          template: this.template,
          panelTemplate: this.panelTemplate,
          notify: this.notify,
          onPanelOpen: (opening) => {
            this.closePanels(opening);
            this.onPanelOpen();
          },
        });
        this.sources.set(info.name, tile);
        this.tiles.append(tile.root);
        this.panelParent.append(tile.panel.root);
      }
      tile.update(info);
    }
    this.#apply();
  }

  /** An event of WS /v1/sources/stream. */
  event(type, detail) {
    this.sources.get(detail?.source)?.event(type, detail);
  }

  /** Close every server camera's History panel but `except`'s. */
  closePanels(except = null) {
    for (const tile of this.sources.values()) if (tile !== except) tile.panel.close({ returnFocus: false });
  }

  tick() {
    for (const tile of this.sources.values()) tile.tick();
  }

  interrupted() {
    for (const tile of this.sources.values()) tile.interrupted();
  }

  #apply() {
    // A remembered camera the server no longer has: back to the webcam. Before the list is read,
    // a remembered grid waits for it (a grid of the webcam alone is just the webcam).
    const source = this.source;
    if (source !== null && this.listed && !this.sources.has(source)) this.view = WEBCAM;
    const grid = this.view === GRID && this.sources.size > 0;
    this.tiles.dataset.layout = grid ? "grid" : "single";
    this.tiles.dataset.view = this.view;
    this.webcam.setShown(grid || this.source === null);
    for (const [name, tile] of this.sources) {
      const alone = this.source === name;
      tile.setShown(grid || alone);
      // One voice for screen readers: a server camera's captions are announced when it is shown
      // alone; in the grid only the webcam's are (several tiles at once would talk over each other).
      tile.tile.announcing = alone;
    }
    this.gridButton.hidden = this.sources.size === 0;
    this.gridButton.setAttribute("aria-pressed", String(grid));
    this.dispatchEvent(new CustomEvent("change", { detail: { view: this.view, grid, source: this.source } }));
  }
}

function load() {
  try {
    const view = localStorage.getItem(STORAGE_KEY) ?? WEBCAM;
    return view === GRID || view === WEBCAM || view.startsWith("source:") ? view : WEBCAM;
  } catch {
    return WEBCAM;
  }
}

function save(view) {
  try {
    localStorage.setItem(STORAGE_KEY, view);
  } catch {
    // Storage can be unavailable (private mode): the choice then lasts for this visit only.
  }
}
