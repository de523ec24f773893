// What the page shows: the notice over the video, the connection pill, the model line, the
// caption overlay and the stats. Nothing here decides anything; app.js calls it.

const $ = (id) => document.getElementById(id);

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

export class View {
  constructor() {
    this.stage = $("stage");
    this.video = $("video");
    this.notice = { box: $("notice"), title: $("notice-title"), text: $("notice-text"), action: $("notice-action") };
    this.noticeAction = null;
    this.notice.action.addEventListener("click", () => this.noticeAction?.());
    this.pill = $("connection-pill");
    this.caption = { box: $("caption"), text: $("caption-text"), live: $("caption-live") };
    this.stats = {
      inference: $("stat-inference"),
      ttft: $("stat-ttft"),
      age: $("stat-age"),
      skipped: $("stat-skipped"),
      unchanged: $("stat-unchanged"),
    };
    this.captionSeq = -1;
    /** The text of the last finished caption, to put back if a caption in progress is cut. */
    this.finalText = "";
    this.skippedTotal = 0;
    this.unchangedTotal = 0;
  }

  /**
   * The card over the video. `action` adds one button (e.g. "Retry now").
   * @param {{title: string, text: string, tone?: "info" | "warn" | "error", action?: {label: string, onClick: () => void}} | null} notice
   */
  setNotice(notice) {
    const { box, title, text, action } = this.notice;
    box.hidden = notice === null;
    if (notice === null) return;
    box.dataset.tone = notice.tone ?? "info";
    // The button stays the same element (only its job changes), so focus on it survives updates.
    this.noticeAction = notice.action?.onClick ?? null;
    action.hidden = !notice.action;
    if (notice.action && action.textContent !== notice.action.label) action.textContent = notice.action.label;
    // Skip identical updates: rewriting a live region makes screen readers announce it again.
    if (title.textContent !== notice.title) title.textContent = notice.title;
    // textContent, never innerHTML: messages may come from the server.
    if (text.textContent !== notice.text) text.textContent = notice.text;
  }

  /** @param {string} text @param {"ok" | "busy" | "warn" | "error"} tone */
  setPill(text, tone) {
    if (this.pill.textContent !== text) this.pill.textContent = text;
    this.pill.dataset.tone = tone;
  }

  /** @param {{name?: string, random_weights?: boolean, demo?: boolean, device?: string, input_size?: number, frames_sent_to?: string, frames_leave_network?: boolean} | null} model */
  setModel(model, fallbackName = null) {
    const name = model?.name ?? fallbackName;
    $("model-name").textContent = name ? name : "No model yet";
    $("model-name").title = model
      ? `${model.backend ?? ""} on ${model.device ?? "?"}, ${model.dtype ?? ""}`.trim()
      : "";
    $("random-badge").hidden = !model?.random_weights;
    // An openai: model on a server beyond this machine and its network: say so, and to whom.
    const remote = $("remote-badge");
    remote.hidden = !model?.frames_leave_network;
    remote.textContent = model?.frames_leave_network ? `frames leave this machine → ${model.frames_sent_to}` : "";
    remote.title = model?.frames_leave_network
      ? `Every camera frame is sent to ${model.frames_sent_to}, which runs the model, beyond this machine and its private network.`
      : "";
    $("demo-badge").hidden = !model?.demo;
    if (model?.input_size) {
      $("size-hint").textContent =
        `Frames are resized to ${model.input_size} px on their short side (the model's preferred size) before they are sent.`;
    }
  }

  setCameraState(state) {
    this.stage.dataset.camera = state;
    const button = $("start-btn");
    button.textContent = state === "on" ? "Stop camera" : state === "starting" ? "Starting…" : "Start camera";
    button.disabled = state === "starting";
    button.classList.toggle("btn-primary", state !== "on");
  }

  setMirror(mirror) {
    this.video.classList.toggle("mirrored", mirror);
    $("mirror-btn").setAttribute("aria-pressed", String(mirror));
  }

  setFullscreen(on) {
    $("fullscreen-btn").setAttribute("aria-pressed", String(on));
    $("fullscreen-btn").textContent = on ? "Exit fullscreen" : "Fullscreen";
  }

  /** A caption is on its way for frame `seq`: until its first token the previous one stays up. */
  captionToken(seq, delta) {
    const { box, text } = this.caption;
    if (seq !== this.captionSeq) {
      // A new frame's caption replaces the old one only once it has something to say, so the
      // overlay never blinks empty between captions.
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

  /** The final text of frame `seq`: authoritative, it replaces whatever the tokens built. */
  captionFinal(event, { ageMs, label, announce = true, details = "" }) {
    const { box, text, live } = this.caption;
    this.captionSeq = event.seq;
    box.hidden = false;
    box.dataset.streaming = "false";
    box.dataset.seq = String(event.seq);
    const following = isScrolledToEnd(box);
    text.textContent = event.text;
    if (following) box.scrollTop = box.scrollHeight;
    this.finalText = event.text;
    // Only finished captions go to the live region: a screen reader then reads whole sentences.
    // Not while they are spoken aloud (speech.js): nobody should hear a caption twice.
    // `details`: where detected objects are, in words (overlay.js).
    const said = `${label ? `${label} ` : ""}${event.text}${details ? `: ${details}` : ""}`;
    live.textContent = announce ? said : "";

    const t = event.timings ?? {};
    this.skippedTotal += event.skipped ?? 0;
    this.stats.inference.textContent = formatMs(t.inference_ms);
    this.stats.ttft.textContent = formatMs(t.first_token_ms);
    this.stats.age.textContent = formatMs(ageMs);
    this.stats.skipped.textContent = String(this.skippedTotal);
  }

  /** Frame `event.seq` looks like the one the caption on screen describes: the caption stays. */
  captionUnchanged(event) {
    this.caption.box.dataset.unchangedSeq = String(event.seq);
    this.unchangedTotal += 1;
    this.stats.unchanged.textContent = String(this.unchangedTotal);
  }

  /** The caption of frame `seq` was cut short for a newer frame's: put the last finished one back. */
  captionSuperseded(seq) {
    this.skippedTotal += 1;
    this.stats.skipped.textContent = String(this.skippedTotal);
    const { box, text } = this.caption;
    if (seq !== this.captionSeq || box.dataset.streaming !== "true") return;
    text.textContent = this.finalText;
    box.dataset.streaming = "false";
    box.hidden = !this.finalText;
  }

  /** A line above the caption saying what was asked ("Q: …"), or nothing for plain captions. */
  setCaptionLabel(label) {
    const element = $("caption-label");
    element.hidden = !label;
    element.textContent = label ?? "";
  }

  /** The connection dropped mid-caption: it will never finish, so stop showing it as being written. */
  captionInterrupted() {
    this.caption.box.dataset.streaming = "false";
  }

  clearCaption() {
    this.caption.box.hidden = true;
    this.caption.text.textContent = "";
    this.captionSeq = -1;
    this.finalText = "";
  }

  /** A short message that fades by itself (an error about one frame; the stream goes on). */
  flash(message) {
    const toast = $("toast");
    toast.textContent = message;
    toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      toast.hidden = true;
    }, 6000);
  }
}
