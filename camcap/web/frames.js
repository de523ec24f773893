// One frame of video -> one binary WebSocket message, in the wire format of
// camcap/server/messages.py: FRAME_MAGIC + uint32 big-endian header length + UTF-8 JSON header
// + JPEG bytes. Never base64: it would cost a third more bytes and an encode on both ends.

const FRAME_MAGIC = new TextEncoder().encode("CCF1");

/**
 * The size to send: short side equal to the model's preferred input size, aspect kept, never
 * upscaled (upscaling adds bytes and no information).
 * @param {number} width
 * @param {number} height
 * @param {number} inputSize the model's preferred short side in pixels (0: keep the camera's size)
 */
export function targetSize(width, height, inputSize) {
  const short = Math.min(width, height);
  if (!inputSize || short <= inputSize) return { width, height };
  const scale = inputSize / short;
  // The short side is set exactly (not rounded from a scaled value) so it matches input_size.
  return width <= height
    ? { width: inputSize, height: Math.round(height * scale) }
    : { width: Math.round(width * scale), height: inputSize };
}

/** Milliseconds since the Unix epoch, with sub-millisecond precision (same clock as Date.now()). */
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

export class FrameGrabber {
  constructor() {
    // An OffscreenCanvas encodes without touching the DOM; the fallback covers older Safari.
    this.canvas = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(1, 1) : document.createElement("canvas");
    this.context = this.canvas.getContext("2d", { alpha: false });
  }

  /**
   * Copy the video's current picture, resized, and encode it as JPEG.
   * @param {HTMLVideoElement} video
   * @param {{inputSize: number, quality: number}} options
   * @returns {Promise<{jpeg: Blob, width: number, height: number, capturedAt: number} | null>}
   *   null while the video has no picture yet
   */
  async grab(video, { inputSize, quality }) {
    if (!video.videoWidth || !video.videoHeight || video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) {
      return null;
    }
    const { width, height } = targetSize(video.videoWidth, video.videoHeight, inputSize);
    if (this.canvas.width !== width) this.canvas.width = width;
    if (this.canvas.height !== height) this.canvas.height = height;
    this.context.imageSmoothingQuality = "high";
    // The capture time is when the pixels are copied; encoding happens after and is not "age".
    const capturedAt = nowMs();
    // Drawn unmirrored whatever the preview shows: text in the scene must reach the model readable.
    this.context.drawImage(video, 0, 0, width, height);
    const jpeg = await this.#encode(quality);
    return { jpeg, width, height, capturedAt };
  }

  #encode(quality) {
    if (this.canvas instanceof HTMLCanvasElement) {
      return new Promise((resolve, reject) => {
        this.canvas.toBlob(
          (blob) => (blob ? resolve(blob) : reject(new Error("The browser could not encode the frame as JPEG."))),
          "image/jpeg",
          quality,
        );
      });
    }
    return this.canvas.convertToBlob({ type: "image/jpeg", quality });
  }
}

/**
 * Build the one binary message for a frame.
 *
 * Bytes, not a Blob of parts: Chromium leaves Blob messages out of its DevTools protocol, so a
 * page sending Blobs cannot be inspected (or tested) from DevTools. The copy costs microseconds
 * for a frame of a few tens of kilobytes.
 * @param {{seq: number, captured_at: number, sent_at: number}} header
 * @param {Uint8Array} image the JPEG bytes
 * @returns {Uint8Array}
 */
export function packFrame(header, image) {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const prefix = FRAME_MAGIC.byteLength + 4;
  const message = new Uint8Array(prefix + json.byteLength + image.byteLength);
  message.set(FRAME_MAGIC, 0);
  // The header's length, big-endian, as the server reads it.
  new DataView(message.buffer).setUint32(FRAME_MAGIC.byteLength, json.byteLength, false);
  message.set(json, prefix);
  message.set(image, prefix + json.byteLength);
  return message;
}
