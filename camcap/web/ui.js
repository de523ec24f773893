// What the page shows: the notice over the video, the connection pill, the model line, the
// caption overlay and the stats. Nothing here decides anything; app.js calls it.

import { formatMs, Tile } from "./tile.js";

const $ = (id) => document.getElementById(id);

export class View {
  constructor() {
    this.stage = $("stage");
    this.video = $("video");
    this.notice = { box: $("notice"), title: $("notice-title"), text: $("notice-text"), action: $("notice-action") };
    this.noticeAction = null;
    this.notice.action.addEventListener("click", () => this.noticeAction?.());
    this.pill = $("connection-pill");
    /** The webcam's tile (grid.js adds one per server camera beside it). */
    this.tile = new Tile($("tile"));
    // The webcam's live region sits outside its tile, so hiding the tile never silences it mid-sentence.
    this.tile.caption.live = $("caption-live");
    this.caption = this.tile.caption;
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
    this.tile.captionToken(seq, delta);
  }

  /** The final text of frame `seq`: authoritative, it replaces whatever the tokens built. */
  captionFinal(event, { ageMs, label, announce = true, details = "" }) {
    // `details`: where detected objects are, in words (overlay.js). Spoken or announced, never both.
    const said = `${label ? `${label} ` : ""}${event.text}${details ? `: ${details}` : ""}`;
    this.tile.captionFinal(event.seq, event.text, { said, announce });
    const t = event.timings ?? {};
    this.skippedTotal += event.skipped ?? 0;
    this.tile.setStats({
      inference: formatMs(t.inference_ms),
      ttft: formatMs(t.first_token_ms),
      age: formatMs(ageMs),
      skipped: String(this.skippedTotal),
    });
  }

  /** Frame `event.seq` looks like the one the caption on screen describes: the caption stays. */
  captionUnchanged(event) {
    this.caption.box.dataset.unchangedSeq = String(event.seq);
    this.unchangedTotal += 1;
    this.tile.setStats({ unchanged: String(this.unchangedTotal) });
  }

  /** The caption of frame `seq` was cut short for a newer frame's: put the last finished one back. */
  captionSuperseded(seq) {
    this.skippedTotal += 1;
    this.tile.setStats({ skipped: String(this.skippedTotal) });
    this.tile.captionSuperseded(seq);
  }

  /** A line above the caption saying what was asked ("Q: …"), or nothing for plain captions. */
  setCaptionLabel(label) {
    this.tile.setCaptionLabel(label);
  }

  /** The connection dropped mid-caption: it will never finish, so stop showing it as being written. */
  captionInterrupted() {
    this.tile.captionInterrupted();
  }

  clearCaption() {
    this.tile.clearCaption();
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
