// The camera: which ones exist, opening one, closing it, and turning failures into words.

/** A camera failure the page can explain. `kind` picks the message. */
export class CameraError extends Error {
  /**
   * @param {"denied" | "none" | "busy" | "insecure" | "unknown"} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = "CameraError";
    this.kind = kind;
  }
}

/** Map a getUserMedia rejection to what the user can do about it. */
function explain(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return new CameraError(
        "denied",
        "Camera access was denied. Allow the camera for this page in the browser's site settings, then press Start camera again.",
      );
    case "NotFoundError":
    case "OverconstrainedError":
      return new CameraError("none", "No camera was found. Connect a camera, then press Start camera again.");
    case "NotReadableError":
    case "AbortError":
      return new CameraError(
        "busy",
        "The camera could not be opened; another application may be using it. Close it, then press Start camera again.",
      );
    default:
      return new CameraError("unknown", `The camera could not be opened: ${error?.message || error}`);
  }
}

export class Camera {
  /** @param {HTMLVideoElement} video */
  constructor(video) {
    this.video = video;
    /** @type {MediaStream | null} */
    this.stream = null;
  }

  get isOn() {
    return this.stream !== null;
  }

  /** The id of the camera actually in use (it can differ from the one asked for). */
  get deviceId() {
    return this.stream?.getVideoTracks()[0]?.getSettings().deviceId ?? "";
  }

  /**
   * Video inputs. Labels are empty until the user has granted access once, so the picker is
   * refreshed after every successful start.
   * @returns {Promise<MediaDeviceInfo[]>}
   */
  static async list() {
    if (!navigator.mediaDevices?.enumerateDevices) return [];
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((device) => device.kind === "videoinput");
  }

  /**
   * Open a camera and show it in the video element.
   * @param {string} deviceId "" for the browser's default camera
   */
  async start(deviceId = "") {
    // mediaDevices is undefined outside a secure context (any http origin but localhost).
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new CameraError(
        "insecure",
        "This browser does not offer the camera on this address. Open the page as http://localhost or http://127.0.0.1 (or over https).",
      );
    }
    this.stop();
    const video = {
      // 720p is plenty: frames are downscaled to the model's size (a few hundred pixels) anyway.
      width: { ideal: 1280 },
      height: { ideal: 720 },
      ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
    };
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (error) {
      throw explain(error);
    }
    this.stream = stream;
    this.video.srcObject = stream;
    await this.video.play().catch(() => {
      // Autoplay of a muted stream is always allowed; a rejection here only means a later
      // play() (e.g. after a source change) superseded this one.
    });
    await waitForFirstFrame(this.video);
  }

  /** Calls `onEnded` when the camera goes away on its own (unplugged, revoked by the OS). */
  onEnded(onEnded) {
    for (const track of this.stream?.getVideoTracks() ?? []) {
      track.addEventListener("ended", onEnded, { once: true });
    }
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
  }
}

/**
 * Resolve once the video has real dimensions (until then there is nothing to capture), or after
 * a few seconds: the frame grabber checks the size again and waits, so a slow camera never hangs
 * the start button.
 */
function waitForFirstFrame(video, timeoutMs = 5000) {
  if (video.videoWidth > 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    video.addEventListener(
      "loadeddata",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
