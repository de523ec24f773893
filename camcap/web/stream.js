// The live channel to the server: ask GET /v1/info whether the model is ready, then hold a
// WebSocket on /v1/stream, and start over with exponential backoff whenever either fails.
// It reports where it stands as "state" events and forwards the server's events as they come.

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15_000;
const LOADING_POLL_MS = 1_000;
const MODEL_ERROR_POLL_MS = 5_000;
const INFO_TIMEOUT_MS = 5_000;
// Answers of the server's access checks (Host, token, Origin): retrying cannot fix them.
const ACCESS_DENIED_STATUSES = new Set([400, 401, 403]);

/**
 * @typedef {"connecting" | "unreachable" | "loading" | "model-error" | "denied" | "ready"} ConnectionState
 * @typedef {{state: ConnectionState, message?: string, retryAt?: number, attempt?: number, info?: object}} StateDetail
 */

/**
 * Read GET /v1/info tolerantly: the model's fields may sit under `model` or at the top level,
 * and a server that says nothing about its status is taken as ready.
 */
export function readInfo(json) {
  const model = json?.model && typeof json.model === "object" ? json.model : json?.name ? json : null;
  const rawStatus = String(json?.status ?? (model ? "ready" : "loading")).toLowerCase();
  const status =
    rawStatus === "error" || rawStatus === "failed" ? "error" : rawStatus === "ready" ? "ready" : "loading";
  const error = json?.error;
  const message =
    (typeof error === "string" ? error : error?.message) ??
    json?.message ??
    json?.detail ??
    "The model failed to load.";
  return { status, model, message: String(message), name: model?.name ?? json?.spec ?? json?.model_spec ?? null };
}

export class Connection extends EventTarget {
  /** @param {{infoUrl?: string, streamUrl?: string}} urls */
  constructor({ infoUrl = "/v1/info", streamUrl = defaultStreamUrl() } = {}) {
    super();
    this.infoUrl = infoUrl;
    this.streamUrl = streamUrl;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.ready = false;
    this.attempt = 0;
    /** @type {ConnectionState | null} */
    this.lastState = null;
    this.wake = () => {};
  }

  /** Start connecting, and keep reconnecting for the life of the page. */
  start() {
    this.#run();
  }

  /** Skip the wait before the next attempt (the "Retry now" button). */
  retryNow() {
    this.attempt = 0;
    this.wake();
  }

  /** @param {Uint8Array | string} data @returns {boolean} whether it was handed to the socket */
  send(data) {
    if (!this.ready || this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(data);
    return true;
  }

  /** Bytes queued in the socket but not yet on the wire (to avoid piling frames on a slow link). */
  get buffered() {
    return this.socket?.bufferedAmount ?? 0;
  }

  async #run() {
    for (;;) {
      // While the model loads the page polls every second; flashing "connecting" between polls
      // would only make the status line flicker.
      if (this.lastState !== "loading" && this.lastState !== "model-error") this.#emitState({ state: "connecting" });
      let info;
      try {
        info = readInfo(await fetchJson(this.infoUrl, INFO_TIMEOUT_MS));
      } catch (error) {
        if (error instanceof AccessDeniedError) {
          // Browsers report a refused WebSocket handshake as a bare 1006, so this answer is the one
          // place the page can learn why. Only a new URL (the token) or a restart helps: stop here.
          this.#emitState({ state: "denied", message: error.message });
          return;
        }
        await this.#retryLater("The camcap server is not answering.");
        continue;
      }
      // The server is reachable, so waiting on the model does not grow the backoff.
      if (info.status === "loading") {
        this.attempt = 0;
        this.#emitState({ state: "loading", info });
        await this.#sleep(LOADING_POLL_MS);
        continue;
      }
      if (info.status === "error") {
        this.attempt = 0;
        this.#emitState({ state: "model-error", message: info.message, info });
        await this.#sleep(MODEL_ERROR_POLL_MS);
        continue;
      }
      const { opened, gotReady } = await this.#holdSocket();
      if (gotReady) this.attempt = 0;
      await this.#retryLater(
        opened
          ? "The connection to the camcap server was lost."
          : // The HTTP API answered but the socket did not open: typically uvicorn without a
            // WebSocket implementation (the `websockets` package), or a proxy in the way.
            "The camcap server answered, but its live connection (WebSocket /v1/stream) could not be opened.",
      );
    }
  }

  /** Open the socket; once it closes, resolve with whether it opened and the server said "ready". */
  #holdSocket() {
    return new Promise((resolve) => {
      let gotReady = false;
      let opened = false;
      const socket = new WebSocket(this.streamUrl);
      this.socket = socket;
      socket.addEventListener("open", () => {
        opened = true;
      });
      socket.addEventListener("message", (message) => {
        if (typeof message.data !== "string") return; // the server only speaks JSON text
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          console.warn("camcap: ignoring a message that is not JSON", message.data);
          return;
        }
        if (event.type === "ready") {
          gotReady = true;
          this.ready = true;
          this.#emitState({ state: "ready", info: event.model ? { model: event.model, name: event.model.name } : {} });
        }
        this.dispatchEvent(new CustomEvent(event.type, { detail: event }));
      });
      socket.addEventListener("close", () => {
        this.ready = false;
        this.socket = null;
        this.dispatchEvent(new CustomEvent("closed"));
        resolve({ opened, gotReady });
      });
      // An "error" is always followed by "close", which does the bookkeeping.
    });
  }

  async #retryLater(message) {
    const base = Math.min(FIRST_RETRY_MS * 2 ** this.attempt, MAX_RETRY_MS);
    // Jitter keeps several open pages from reconnecting in lockstep after a server restart.
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.#emitState({ state: "unreachable", message, retryAt: Date.now() + delay, attempt: this.attempt });
    await this.#sleep(delay);
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** @param {StateDetail} detail */
  #emitState(detail) {
    this.lastState = detail.state;
    this.dispatchEvent(new CustomEvent("state", { detail }));
  }
}

function defaultStreamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/stream`;
}

/** The server refused this page (wrong or missing token, Origin or Host); `message` says what to do. */
export class AccessDeniedError extends Error {}

async function fetchJson(url, timeoutMs) {
  const response = await fetch(url, { cache: "no-store", signal: AbortSignal.timeout(timeoutMs) });
  // A 503 while loading may still carry a JSON body that says so; read it whatever the status.
  const json = await response.json().catch(() => null);
  if (ACCESS_DENIED_STATUSES.has(response.status)) {
    throw new AccessDeniedError(
      typeof json?.detail === "string"
        ? json.detail
        : `The camcap server refused this page (HTTP ${response.status}). Open the URL that \`camcap serve\` printed.`,
    );
  }
  if (json === null) throw new Error(`GET ${url} answered ${response.status} without JSON.`);
  return json;
}
