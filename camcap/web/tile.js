// One camera's tile: its picture, its caption as it is written, its stats and its status line.
//
// A component, made once per camera: the webcam's tile is in index.html (#tile), a server
// camera's is a copy of the #source-tile template. It finds its parts by data-part, never by id,
// so any number of tiles can live on the page at once (grid.js lays them out).

/** "84 ms", "1.3 s", "–" */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** Whether a scrolling box shows its last line (or does not scroll at all). */
function isScrolledToEnd(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 24;
}

export class Tile {
  /** @param {HTMLElement} root the tile's element (`.tile`) */
  constructor(root) {
    this.root = root;
    const part = (name) => root.querySelector(`[data-part="${name}"]`);
    this.caption = { box: part("caption"), label: part("caption-label"), text: part("caption-text"), live: part("caption-live") };
    this.status = part("status");
    this.title = part("title");
    /** @type {Record<string, HTMLElement>} data-stat name -> its value element */
    this.stats = Object.fromEntries([...root.querySelectorAll("[data-stat]")].map((el) => [el.dataset.stat, el]));
    this.captionSeq = -1;
    /** The text of the last finished caption, to put back if a caption in progress is cut. */
    this.finalText = "";
    /** Whether finished captions go to this tile's live region (one tile speaks at a time). */
    this.announcing = true;
  }

  get name() {
    return this.root.dataset.camera ?? "";
  }

  /** Show or hide the tile (the layout decides which tiles are on screen). */
  setShown(shown) {
    this.root.hidden = !shown;
  }

  /** @param {Record<string, string>} values data-stat name -> text */
  setStats(values) {
    for (const [name, value] of Object.entries(values)) {
      const element = this.stats[name];
      if (element && element.textContent !== value) element.textContent = value;
    }
  }

  /** The line under the camera's name: "Live", "Down: connection refused · retrying in 4 s", … */
  setStatus(text, tone = "ok") {
    if (!this.status) return;
    if (this.status.textContent !== text) this.status.textContent = text;
    this.status.dataset.tone = tone;
  }

  /** A caption is on its way for frame `seq`: until its first token the previous one stays up. */
  captionToken(seq, delta) {
    const { box, text } = this.caption;
    if (seq !== this.captionSeq) {
      // A new frame's caption replaces the old one only once it has something to say, so the
      // caption never blinks empty between captions.
      this.captionSeq = seq;
      text.textContent = "";
    }
    box.hidden = false;
    box.dataset.seq = String(seq);
    box.dataset.streaming = "true";
    const following = isScrolledToEnd(box);
    text.textContent += delta;
    // A caption longer than its box scrolls: the newest words stay in view as they are written,
    // unless the user scrolled back to read the start.
    if (following) box.scrollTop = box.scrollHeight;
  }

  /**
   * The final text of frame `seq`: authoritative, it replaces whatever the tokens built.
   * `said`: what the live region reads (default: the text); `announce`: false while speech
   * reads captions aloud (speech.js), so nobody hears a caption twice.
   */
  captionFinal(seq, finalText, { said = finalText, announce = true } = {}) {
    const { box, text, live } = this.caption;
    this.captionSeq = seq;
    box.hidden = false;
    box.dataset.streaming = "false";
    box.dataset.seq = String(seq);
    const following = isScrolledToEnd(box);
    text.textContent = finalText;
    if (following) box.scrollTop = box.scrollHeight;
    this.finalText = finalText;
    // Only finished captions go to the live region: a screen reader then reads whole sentences.
    if (live) live.textContent = announce && this.announcing ? said : "";
  }

  /** The caption of frame `seq` was cut short for a newer frame's: put the last finished one back. */
  captionSuperseded(seq) {
    const { box, text } = this.caption;
    if (seq !== this.captionSeq || box.dataset.streaming !== "true") return;
    text.textContent = this.finalText;
    box.dataset.streaming = "false";
    box.hidden = !this.finalText;
  }

  /** A line above the caption saying what was asked ("Q: …"), or nothing for plain captions. */
  setCaptionLabel(label) {
    const element = this.caption.label;
    if (!element) return;
    element.hidden = !label;
    element.textContent = label ?? "";
  }

  /** The caption in progress will never finish: stop showing it as being written. */
  captionInterrupted() {
    this.caption.box.dataset.streaming = "false";
  }

  clearCaption() {
    this.caption.box.hidden = true;
    this.caption.text.textContent = "";
    this.captionSeq = -1;
    this.finalText = "";
  }
}
