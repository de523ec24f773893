// The page's wiring: camera -> frame grabber -> pacer -> connection -> view.
// Each part lives in its own module; this one holds the little state they share and decides
// what the user is told.

import { RulesApi } from "./alerts-api.js";
import { AlertsPanel } from "./alerts-panel.js";
import { Alerts, bindAlertSettings } from "./alerts.js";
import { Camera } from "./camera.js";
import { Controls } from "./controls.js";
import { FrameGrabber, nowMs, packFrame } from "./frames.js";
import { Layout, WEBCAM } from "./grid.js";
import { CaptionHistory } from "./history.js";
import { HistoryPanel } from "./history-panel.js";
import { Overlay } from "./overlay.js";
import { Pacer } from "./pacer.js";
import { SourceFeed } from "./sources.js";
import { bindSpeechControls, Speaker } from "./speech.js";
import { Connection } from "./stream.js";
import { View } from "./ui.js";

// The URL `camcap serve` opened carries ?token=; the server answered it with a cookie that the
// page's requests and WebSocket now carry. Take the token out of the address bar, and so out of
// the browser's history, as Jupyter does.
forgetTokenInAddress();

function forgetTokenInAddress() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has("token")) return;
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
}

const view = new View();
const controls = new Controls();
const camera = new Camera(view.video);
const grabber = new FrameGrabber();
const connection = new Connection();
const pacer = new Pacer(sendFrame);
const overlay = new Overlay(
  document.querySelector("#tile .tile-media"),
  view.video,
  document.getElementById("detections"),
);
const speaker = new Speaker();
bindSpeechControls(speaker);
const history = new CaptionHistory();
const historyPanel = new HistoryPanel(document.getElementById("history"), history, {
  button: document.getElementById("history-btn"),
  notify: (message) => view.flash(message),
});
const alerts = new Alerts({ banner: document.getElementById("alert-banner"), history });
bindAlertSettings(alerts);
const alertsPanel = new AlertsPanel(document.getElementById("alerts"), new RulesApi(), alerts, {
  button: document.getElementById("alerts-btn"),
});
// The server's cameras (`camcap serve --source`) beside the webcam: one on screen, or a grid.
const sourceFeed = new SourceFeed();
const layout = new Layout({
  tiles: document.getElementById("tiles"),
  webcam: view.tile,
  template: document.getElementById("source-tile"),
  panelTemplate: document.getElementById("history"),
  panelParent: view.stage,
  gridButton: document.getElementById("grid-btn"),
  notify: (message) => view.flash(message),
  onPanelOpen: () => {
    // One panel at a time, as for the webcam's History and Settings.
    controls.close({ returnFocus: false });
    historyPanel.close({ returnFocus: false });
    alertsPanel.close({ returnFocus: false });
  },
});

const state = {
  /** @type {"off" | "starting" | "on" | "error"} */
  camera: "off",
  /** @type {import("./camera.js").CameraError | null} */
  cameraError: null,
  /** @type {import("./stream.js").StateDetail} */
  connection: { state: "connecting" },
  /** The model as the server describes it (ModelInfoOut in camcap/server/messages.py). */
  model: null,
  modelName: null,
  /** What the server accepts per frame (LimitsOut), from the ready event. */
  limits: null,
  nextSeq: 0,
  /** Frames numbered below this were sent before the camera was last stopped: their answers may
   * still arrive, but they describe a picture no longer shown, so they stay off the screen. */
  shownFromSeq: 0,
};

// --- frames --------------------------------------------------------------------------------------

/** Capture, encode and send one frame; its seq, or null if nothing could be sent now. */
async function sendFrame() {
  if (!connection.ready || !camera.isOn) return null;
  // Bytes still queued from the previous frame mean a slow link: a new frame would only queue
  // behind them and arrive stale. Try again shortly instead.
  if (connection.buffered > 0) return null;
  const frame = await grabber.grab(view.video, {
    inputSize: state.model?.input_size ?? 0,
    quality: controls.settings.quality,
  });
  // Grabbing awaits: Stop may have been pressed meanwhile, and no frame goes out after Stop.
  if (!frame || !connection.ready || !camera.isOn) return null;
  const maxBytes = state.limits?.max_frame_bytes;
  if (maxBytes && frame.jpeg.size > maxBytes) {
    // The server would refuse it (frame_too_large); say why instead of sending it in vain.
    view.flash(
      `A frame is ${Math.round(frame.jpeg.size / 1024)} KB, over the server's limit of ${Math.round(maxBytes / 1024)} KB: lower the JPEG quality.`,
    );
    return null;
  }
  const image = new Uint8Array(await frame.jpeg.arrayBuffer());
  if (!camera.isOn) return null;
  const seq = state.nextSeq++;
  // sent_at is taken last, right before the bytes go to the socket.
  const message = packFrame({ seq, captured_at: frame.capturedAt, sent_at: nowMs() }, image);
  return connection.send(message) ? seq : null;
}

function applyPacing() {
  const { pacing, minGap, interval } = controls.settings;
  pacer.configure({ mode: pacing, minGapMs: minGap * 1000, intervalMs: interval * 1000 });
}

function sendConfig() {
  const message = controls.configMessage();
  if (message === null) {
    view.flash(
      controls.settings.task === "query"
        ? "Type a question to ask of every frame; until then the previous task continues."
        : "Type the name of an object to find; until then the previous task continues.",
    );
    return;
  }
  view.setCaptionLabel(message.task === "query" ? `Q: ${message.question}` : null);
  connection.send(JSON.stringify(message));
}

// --- camera --------------------------------------------------------------------------------------

async function startCamera() {
  setCamera("starting");
  try {
    try {
      await camera.start(controls.settings.deviceId);
    } catch (error) {
      // A remembered camera may be gone (unplugged): fall back to the default one once.
      if (error.kind !== "none" || !controls.settings.deviceId) throw error;
      await camera.start("");
    }
  } catch (error) {
    state.cameraError = error;
    setCamera("error");
    return;
  }
  state.cameraError = null;
  camera.onEnded(() => {
    stopCamera();
    view.flash("The camera stopped: it was unplugged or another application took it.");
  });
  setCamera("on");
  pacer.start();
  Camera.list()
    .then((devices) => controls.setCameras(devices, camera.deviceId))
    .catch(() => {});
}

function stopCamera() {
  pacer.stop();
  camera.stop();
  speaker.stop();
  state.shownFromSeq = state.nextSeq;
  // The caption describes a picture no longer shown: take it down with the video.
  view.clearCaption();
  overlay.clear();
  setCamera("off");
}

function setCamera(cameraState) {
  state.camera = cameraState;
  view.setCameraState(cameraState);
  // The webcam tile's own status line, read in the grid where the notice card does not speak for it.
  const words = { on: ["Live", "ok"], starting: ["Starting…", "busy"], off: ["Off · press Start camera", "off"] };
  const [text, tone] = words[cameraState] ?? [state.cameraError?.message ?? "Camera error", "error"];
  view.tile.setStatus(text, tone);
  render();
}

// --- what the user is told -----------------------------------------------------------------------

const CAMERA_ERROR_TITLES = {
  denied: "Camera access denied",
  none: "No camera found",
  busy: "Camera unavailable",
  insecure: "Camera not available on this address",
  unknown: "Camera error",
};

function render() {
  const c = state.connection;
  const name = state.model?.name ?? state.modelName ?? "the model";
  const retryIn = Math.max(0, Math.ceil(((c.retryAt ?? 0) - Date.now()) / 1000));

  switch (c.state) {
    case "ready":
      view.setPill(state.camera === "on" ? "Live" : "Connected", "ok");
      break;
    case "loading":
      view.setPill("Loading model…", "busy");
      break;
    case "model-error":
      view.setPill("Model error", "error");
      break;
    case "denied":
      view.setPill("Access denied", "error");
      break;
    case "unreachable":
      view.setPill(`Server unreachable · retry ${c.attempt} in ${retryIn} s`, "warn");
      break;
    default:
      view.setPill("Connecting…", "busy");
  }

  // The most urgent thing wins the notice card; nothing shows while captions flow. The webcam's own
  // notices (off, starting) only while it is alone on screen: in the grid its tile says so itself.
  const webcamAlone = layout.webcamAlone;
  if (state.camera === "error" && state.cameraError && layout.showsWebcam) {
    view.setNotice({
      title: CAMERA_ERROR_TITLES[state.cameraError.kind] ?? CAMERA_ERROR_TITLES.unknown,
      text: state.cameraError.message,
      tone: "error",
    });
  } else if (c.state === "denied") {
    // Verbatim: the server's detail says which check failed and what to do (open the printed URL).
    view.setNotice({ title: "Access denied", text: c.message ?? "", tone: "error" });
  } else if (c.state === "unreachable") {
    view.setNotice({
      title: "Server unreachable",
      // No countdown here: this is a live region, and a ticking number would be read out every second.
      text: `${c.message} Retrying automatically, less often each time. Is \`camcap serve\` still running?`,
      tone: "warn",
      action: { label: "Retry now", onClick: () => connection.retryNow() },
    });
  } else if (c.state === "model-error") {
    // Verbatim: the server's message says what failed and what to do.
    view.setNotice({ title: "Model error", text: c.message ?? "", tone: "error" });
  } else if (c.state === "loading") {
    view.setNotice({
      title: "Loading model…",
      text: `camcap is loading ${name}. Captions start as soon as it is ready.`,
    });
  } else if (c.state === "connecting") {
    view.setNotice({ title: "Connecting…", text: "Reaching the camcap server on this machine." });
  } else if (state.camera === "off" && webcamAlone) {
    view.setNotice({
      title: "Camera is off",
      text: `Press Start camera to begin. ${whereFramesGo(state.model)}`,
    });
  } else if (state.camera === "starting" && webcamAlone) {
    view.setNotice({ title: "Starting camera…", text: "Allow camera access if the browser asks." });
  } else {
    view.setNotice(null);
  }
}

// --- the server ----------------------------------------------------------------------------------

connection.addEventListener("state", ({ detail }) => {
  state.connection = detail;
  if (detail.info?.model) setModel(detail.info.model);
  else if (detail.info?.name) state.modelName = detail.info.name;
  view.setModel(state.model, state.modelName);
  render();
});

connection.addEventListener("ready", ({ detail }) => {
  // The ready event is authoritative for this stream: size, tasks and name come from it.
  setModel(detail.model);
  state.limits = detail.limits ?? null;
  alerts.streamId = detail.stream_id ?? null; // this camera's name in alert rules
  view.setModel(state.model, state.modelName);
  sendConfig();
  pacer.reset(); // send the first frame now rather than at the next retry tick
  render();
});

connection.addEventListener("closed", () => {
  // Whatever was in flight will never be answered; a caption in progress will not finish.
  pacer.reset();
  view.captionInterrupted();
});

connection.addEventListener("token", ({ detail }) => {
  if (detail.seq >= state.shownFromSeq) view.captionToken(detail.seq, detail.text);
});

connection.addEventListener("caption", ({ detail }) => {
  if (detail.seq < state.shownFromSeq) return;
  const ageMs = detail.captured_at ? nowMs() - detail.captured_at : null;
  const label = detail.task === "query" ? controls.configMessage()?.question : null;
  // Boxes and points go on the picture, and in words to the detections list and the announcement.
  const located = detail.task === "detect" || detail.task === "point";
  overlay.show(located ? detail : {}, located ? controls.settings.target.trim() : "");
  const where = overlay.describe().join("; ");
  // Spoken or announced to screen readers, never both (speech.js says why).
  view.captionFinal(detail, {
    ageMs,
    label: label ? `Q: ${label} A:` : null,
    announce: speaker.announces,
    details: where,
  });
  // A caption that lands after the camera stopped describes nothing on screen: not read out.
  if (state.camera === "on") speaker.say(label ? `${label} ${detail.text}` : detail.text);
  history.add({
    text: detail.text,
    capturedAt: detail.captured_at,
    finishedAt: nowMs(),
    task: detail.task,
    label: label ? `Q: ${label}` : null,
  });
  pacer.done(detail.seq);
});

// A rule watching this camera changed state (camcap/server: alert events).
connection.addEventListener("alert", ({ detail }) => alerts.handle(detail));

connection.addEventListener("unchanged", ({ detail }) => {
  // The scene has not changed since the caption on screen: it stays up, and this answer frees the
  // pacer like a caption would (a page waiting for a caption here would stall).
  view.captionUnchanged(detail);
  history.stillTrue(detail.captured_at);
  pacer.done(detail.seq, { unchanged: true });
});

connection.addEventListener("error", ({ detail }) => {
  // An error about one frame frees the model for the next one; the stream goes on.
  if (detail.seq !== null && detail.seq !== undefined) pacer.done(detail.seq);
  if (detail.code === "superseded") {
    // Not a failure: the server cut this caption short to caption a newer frame (cut_stale).
    view.captionSuperseded(detail.seq);
    return;
  }
  view.flash(
    detail.seq !== null && detail.seq !== undefined ? `Frame ${detail.seq}: ${detail.message}` : detail.message,
  );
});

/** Where frames go, in plain words: the privacy promise, or where it ends (an openai: model). */
function whereFramesGo(model) {
  if (!model?.frames_sent_to) return "Frames go only to the camcap server on this machine.";
  if (model.frames_leave_network) return `Frames leave this machine: they are sent to ${model.frames_sent_to}.`;
  return `Frames are sent to ${model.frames_sent_to}, on this machine or your private network.`;
}

function setModel(model) {
  if (!model) return;
  state.model = model;
  state.modelName = model.name;
  controls.setSupportedTasks(model.tasks);
}

// --- controls ------------------------------------------------------------------------------------

document.getElementById("start-btn").addEventListener("click", () => {
  if (state.camera === "on") stopCamera();
  else {
    if (!layout.showsWebcam) layout.show(WEBCAM); // a server camera was on screen: back to the webcam
    startCamera();
  }
});

document.getElementById("mirror-btn").addEventListener("click", () => {
  const mirror = !controls.settings.mirror;
  controls.setMirror(mirror);
  view.setMirror(mirror);
  overlay.setMirror(mirror);
});

const fullscreenButton = document.getElementById("fullscreen-btn");
fullscreenButton.disabled = !document.fullscreenEnabled;
fullscreenButton.addEventListener("click", () => {
  // The whole stage goes fullscreen, so the caption and controls stay over the video.
  if (document.fullscreenElement) document.exitFullscreen();
  else view.stage.requestFullscreen().catch((error) => view.flash(`Fullscreen was refused: ${error.message}`));
});
document.addEventListener("fullscreenchange", () => view.setFullscreen(Boolean(document.fullscreenElement)));

// One panel at a time: History, Alerts and Settings open in the same place (and close a server
// camera's History).
const panels = { "history-btn": historyPanel, "alerts-btn": alertsPanel, "settings-btn": controls };
for (const [id, panel] of Object.entries(panels)) {
  document.getElementById(id).addEventListener("click", () => {
    for (const other of Object.values(panels)) if (other !== panel) other.close({ returnFocus: false });
    layout.closePanels();
  });
}

controls.addEventListener("camera", () => {
  if (layout.source !== null) layout.show(WEBCAM); // a browser camera chosen: show it
  if (state.camera === "on") startCamera();
});
controls.addEventListener("source", ({ detail: name }) => layout.show(`source:${name}`));
controls.addEventListener("task", () => sendConfig());
controls.addEventListener("pacing", () => applyPacing());

navigator.mediaDevices?.addEventListener?.("devicechange", () => {
  Camera.list()
    .then((devices) => controls.setCameras(devices, camera.deviceId))
    .catch(() => {});
});

// --- the server's cameras --------------------------------------------------------------------------

layout.addEventListener("change", ({ detail }) => {
  controls.setSources([...layout.sources.keys()], detail.source);
  // A webcam nobody sees is not filmed: showing a server camera alone stops it.
  if (!layout.showsWebcam && state.camera === "on") stopCamera();
  render();
});
sourceFeed.addEventListener("sources", ({ detail }) => layout.setSources(detail));
for (const type of ["source_caption", "source_token", "source_up", "source_down", "source_ended"]) {
  sourceFeed.addEventListener(type, ({ detail }) => layout.event(type, detail));
}
sourceFeed.addEventListener("closed", () => layout.interrupted());
// A server camera's alert marks that camera's own History (the banner is shared).
sourceFeed.addEventListener("alert", ({ detail }) =>
  alerts.handle(detail, layout.sources.get(detail.camera)?.history ?? history),
);

// A countdown that says "retry in 3 s" must tick even when nothing else happens.
setInterval(() => {
  if (state.connection.state === "unreachable") render();
  layout.tick();
}, 1000);

view.setMirror(controls.settings.mirror);
overlay.setMirror(controls.settings.mirror);
view.setCameraState("off");
applyPacing();
render();
Camera.list()
  .then((devices) => controls.setCameras(devices, ""))
  .catch(() => {}); // no picker entries is fine: "Default camera" still works
connection.start();
sourceFeed.start();
