// Detect and point results drawn over the picture, and said in words for screen readers.
//
// Results come normalised to the frame the model saw (0..1 of its width and height: the camera's
// own, unmirrored picture). On screen that picture is letterboxed inside the video element
// (object-fit: contain) and maybe mirrored, so each result is placed on the picture's real box
// and flipped with it. The drawing is its own layer, never mirrored itself: labels stay readable.

const SVG = "http://www.w3.org/2000/svg";

/**
 * Where the picture really is inside a video element shown with object-fit: contain.
 * @returns {{left: number, top: number, width: number, height: number}} in the element's pixels
 */
export function pictureBox(elementWidth, elementHeight, videoWidth, videoHeight) {
  if (!(videoWidth > 0 && videoHeight > 0)) return { left: 0, top: 0, width: elementWidth, height: elementHeight };
  const scale = Math.min(elementWidth / videoWidth, elementHeight / videoHeight);
  const width = videoWidth * scale;
  const height = videoHeight * scale;
  return { left: (elementWidth - width) / 2, top: (elementHeight - height) / 2, width, height };
}

/**
 * A normalised box or point of the model's frame, in the element's pixels as shown.
 * @param {{x_min: number, y_min: number, x_max: number, y_max: number}} box
 */
export function placeBox(box, picture, mirror) {
  const [x0, x1] = mirror ? [1 - box.x_max, 1 - box.x_min] : [box.x_min, box.x_max];
  return {
    left: picture.left + x0 * picture.width,
    top: picture.top + box.y_min * picture.height,
    width: (x1 - x0) * picture.width,
    height: (box.y_max - box.y_min) * picture.height,
  };
}

/** @param {{x: number, y: number}} point */
export function placePoint(point, picture, mirror) {
  return {
    x: picture.left + (mirror ? 1 - point.x : point.x) * picture.width,
    y: picture.top + point.y * picture.height,
  };
}

/** "top left", "centre", "bottom right": where a spot of the picture is, as the user sees it. */
export function whereOnScreen(x, y) {
  const row = y < 1 / 3 ? "top" : y > 2 / 3 ? "bottom" : "middle";
  const column = x < 1 / 3 ? "left" : x > 2 / 3 ? "right" : "centre";
  if (row === "middle" && column === "centre") return "centre";
  if (row === "middle") return `middle ${column}`;
  return column === "centre" ? `${row} centre` : `${row} ${column}`;
}

/**
 * The results in words, one line each, placed as seen on screen (mirrored or not).
 * @returns {string[]}
 */
export function describeResults({ boxes = [], points = [], label = "" }, mirror) {
  const name = label || "object";
  const percent = (v) => `${Math.round(v * 100)}%`;
  const lines = boxes.map((box, i) => {
    const [x0, x1] = mirror ? [1 - box.x_max, 1 - box.x_min] : [box.x_min, box.x_max];
    const where = whereOnScreen((x0 + x1) / 2, (box.y_min + box.y_max) / 2);
    const size = `${percent(x1 - x0)} wide, ${percent(box.y_max - box.y_min)} high`;
    return `${name} ${i + 1}: ${where} (${size})`;
  });
  points.forEach((point, i) => {
    const x = mirror ? 1 - point.x : point.x;
    lines.push(`${name} ${boxes.length + i + 1}: ${whereOnScreen(x, point.y)}`);
  });
  return lines;
}

export class Overlay {
  /**
   * @param {HTMLElement} media the tile's media box (holds the video)
   * @param {HTMLVideoElement} video
   * @param {HTMLElement} list a visually hidden list the results are written into, for screen readers
   */
  constructor(media, video, list) {
    this.video = video;
    this.list = list;
    this.mirror = false;
    this.result = null;
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.classList.add("overlay");
    this.svg.setAttribute("aria-hidden", "true"); // the list below says the same in words
    media.append(this.svg);
    // Redraw whenever the picture moves: a resized window, a rotated phone, fullscreen, or the
    // camera's size becoming known.
    new ResizeObserver(() => this.#draw()).observe(media);
    video.addEventListener("loadedmetadata", () => this.#draw());
    video.addEventListener("resize", () => this.#draw());
  }

  /** Show a caption event's boxes and points (or clear them if it has none). */
  show({ boxes = [], points = [] } = {}, label = "") {
    this.result = boxes.length || points.length ? { boxes, points, label } : null;
    this.#draw();
    this.#describe();
  }

  setMirror(mirror) {
    this.mirror = mirror;
    this.#draw();
    this.#describe();
  }

  clear() {
    this.show();
  }

  /** The results in words (what the list holds), for the live announcement. */
  describe() {
    return this.result ? describeResults(this.result, this.mirror) : [];
  }

  #describe() {
    this.list.replaceChildren(
      ...this.describe().map((line) => {
        const item = document.createElement("li");
        item.textContent = line;
        return item;
      }),
    );
  }

  #draw() {
    const width = this.svg.clientWidth;
    const height = this.svg.clientHeight;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.replaceChildren();
    if (!this.result || !width || !height) return;
    const picture = pictureBox(width, height, this.video.videoWidth, this.video.videoHeight);
    const { boxes, points, label } = this.result;
    const shapes = boxes.map((box) => ({ kind: "box", ...placeBox(box, picture, this.mirror) }));
    for (const point of points) shapes.push({ kind: "point", ...placePoint(point, picture, this.mirror) });
    shapes.forEach((shape, i) => {
      const group = element("g", { class: `overlay-${shape.kind}` });
      // In the document first: a label is measured (getBBox) to fit its backing, and only a
      // rendered element has a size.
      this.svg.append(group);
      if (shape.kind === "box") {
        group.append(element("rect", { x: shape.left, y: shape.top, width: shape.width, height: shape.height }));
        this.#label(group, `${label || "object"} ${i + 1}`, shape.left, shape.top, picture);
      } else {
        group.append(element("circle", { cx: shape.x, cy: shape.y, r: 9 }));
        group.append(element("circle", { cx: shape.x, cy: shape.y, r: 3, class: "overlay-dot" }));
        this.#label(group, `${label || "object"} ${i + 1}`, shape.x + 12, shape.y - 12, picture);
      }
    });
  }

  /** A label on a dark backing, kept inside the picture so it is never cut off. */
  #label(group, text, x, y, picture) {
    const label = element("text", { class: "overlay-label" });
    label.textContent = text;
    group.append(label);
    const { width, height } = label.getBBox();
    const padding = 4;
    const boxWidth = width + 2 * padding;
    const boxHeight = height + 2 * padding;
    // Above the shape's corner if there is room, else just inside it.
    let top = y - boxHeight;
    if (top < picture.top) top = y;
    const left = Math.min(Math.max(x, picture.left), picture.left + picture.width - boxWidth);
    top = Math.min(top, picture.top + picture.height - boxHeight);
    const backing = element("rect", { x: left, y: top, width: boxWidth, height: boxHeight, rx: 4, class: "overlay-backing" });
    label.setAttribute("x", String(left + padding));
    label.setAttribute("y", String(top + padding + height * 0.8));
    group.insertBefore(backing, label);
  }
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}
