// The server's own cameras (`camcap serve --source NAME=URL`): their list from GET /v1/sources,
// and their live events from WS /v1/sources/stream. Reports "sources" (the list, whenever it is
// read) and forwards every event of the socket under its own type ("source_caption",
// "source_token", "source_up", "source_down", "source_ended").

// The list carries what no event says (counters, a reader still connecting): read it this often.
const LIST_EVERY_MS = 5_000;
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
const LIST_TIMEOUT_MS = 5_000;

/** @typedef {{name: string, url: string, kind: string, status: string, error: string | null,
 *   last_caption: {at: string, text: string, task: string, frame_age_ms: number, inference_ms: number} | null,
 *   frames_read: number, captioned: number, reconnects: number, decode_errors: number}} SourceInfo */

export class SourceFeed extends EventTarget {
  constructor({ listUrl = "/v1/sources", streamUrl = defaultStreamUrl() } = {}) {
    super();
    this.listUrl = listUrl;
    this.streamUrl = streamUrl;
    /** @type {SourceInfo[]} */
    this.sources = [];
    this.attempt = 0;
    this.socket = null;
  }

  /** Read the list, then hold the socket for as long as the page is open (if there are sources). */
  async start() {
    // Nothing to show until the server answers; a server without sources needs no socket.
    while (!(await this.#readList())) await sleep(this.#backoff());
    if (!this.sources.length) return;
    this.#connect();
    setInterval(() => {
      if (document.visibilityState === "visible") this.#readList();
    }, LIST_EVERY_MS);
  }

  /** @returns {Promise<boolean>} whether the list was read */
  async #readList() {
    try {
      const response = await fetch(this.listUrl, { cache: "no-store", signal: AbortSignal.timeout(LIST_TIMEOUT_MS) });
      if (!response.ok) return false;
      const body = await response.json();
      this.sources = Array.isArray(body?.sources) ? body.sources : [];
    } catch {
      return false; // the page's own connection line says when the server is unreachable
    }
    this.dispatchEvent(new CustomEvent("sources", { detail: this.sources }));
    return true;
  }

  #connect() {
    const socket = new WebSocket(this.streamUrl);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      // Every source's events (the page shows them all, in the grid).
      socket.send(JSON.stringify({ type: "config" }));
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // the server only speaks JSON text
      }
      if (typeof event?.type === "string") this.dispatchEvent(new CustomEvent(event.type, { detail: event }));
    });
    socket.addEventListener("close", async () => {
      this.socket = null;
      this.dispatchEvent(new CustomEvent("closed"));
      await sleep(this.#backoff());
      await this.#readList(); // statuses may have changed while nobody listened
      this.#connect();
    });
  }

  #backoff() {
    const base = Math.min(FIRST_RETRY_MS * 2 ** this.attempt, MAX_RETRY_MS);
    this.attempt += 1;
    return Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: pages do not retry in lockstep
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function defaultStreamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/sources/stream`;
}
