"""Draw the scenes `demo:shapes` learns from, with their ground truth.

A scene is one or two coloured shapes on the left, centre or right of a background, seen through
a cheap imitation of a camera (lighting, white balance, slight rotation and perspective, blur,
sensor noise, JPEG). Everything is deterministic from a seed, so a test can draw the very scene
it expects a caption of:

    >>> spec = SceneSpec(objects=(ShapeSpec("red", "circle", "left"),), background="plain")
    >>> image, truth = draw_scene(spec, (128, 96))
    >>> truth.caption("normal")
    'a red circle on the left'

`random_scene(rng)` draws specs the way training does. `parse_caption` reads a caption back into
(colour, shape, side) triples, so a test can compare what the model said with what was drawn.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Saturated colours a webcam still tells apart under a white-balance shift.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "green": (40, 165, 60),
    "blue": (35, 85, 215),
    "purple": (135, 55, 185),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIDES: tuple[str, ...] = ("left", "centre", "right")
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise", "stripes", "clutter")
# Words the long caption uses for each background.
BACKGROUND_WORDS: dict[str, str] = {
    "plain": "plain",
    "gradient": "gradient",
    "noise": "noisy",
    "stripes": "striped",
    "clutter": "cluttered",
}
# Where an object's centre may lie across the width, per side: the middle of each third, so
# "left" is unmistakably left. `partly_out` objects on the left/right go past the frame's edge.
_SIDE_SPANS: dict[str, tuple[float, float]] = {
    "left": (0.10, 0.25),
    "centre": (0.42, 0.58),
    "right": (0.75, 0.90),
}
SMALL, LARGE = 0.30, 0.45  # size (fraction of the short side) below / above which long captions say so
MIN_SIZE, MAX_SIZE = 0.20, 0.60


@dataclass(frozen=True)
class ShapeSpec:
    """One shape to draw. Positions and size are fractions of the frame, so a spec draws at any size.

    `size` is the side of the shape's bounding square as a fraction of the frame's short side;
    `x`/`y` place its centre (fractions of width/height; `None`: the middle of its side / frame).
    """

    colour: str
    shape: str
    side: str
    size: float = 0.35
    x: float | None = None
    y: float | None = None
    rotation: float = 0.0  # degrees, the shape's own rotation

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.colour, COLOURS, "colour"),
            (self.shape, SHAPES, "shape"),
            (self.side, SIDES, "side"),
        ):
            if value not in allowed:
                raise ValueError(f"Unknown {what} {value!r}, expected one of: {', '.join(allowed)}.")


@dataclass(frozen=True)
class Nuisance:
    """What the camera does to the picture. `Nuisance()` is a clean camera."""

    gain: float = 1.0  # overall brightness
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gains
    tilt: float = 0.0  # degrees the whole camera is rotated
    perspective: float = 0.0  # how far (fraction of the frame) the corners move
    blur: float = 0.0  # Gaussian radius, pixels of the output
    noise: float = 0.0  # sensor noise, standard deviation in 0-255 levels
    jpeg_quality: int | None = None  # None: no JPEG round trip


@dataclass(frozen=True)
class SceneSpec:
    """A whole scene: its shapes (any order), its background and the camera's nuisance."""

    objects: tuple[ShapeSpec, ...]
    background: str = "plain"
    nuisance: Nuisance = field(default_factory=Nuisance)
    seed: int = 0  # drives the background's texture and the sensor noise

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"Unknown background {self.background!r}, expected one of: {', '.join(BACKGROUNDS)}.")


@dataclass(frozen=True)
class DrawnObject:
    """Ground truth of one drawn shape; `box` is (x0, y0, x1, y1) in pixels of the drawn image."""

    colour: str
    shape: str
    side: str
    size: float
    box: tuple[int, int, int, int]

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Truth:
    """What a scene shows, objects ordered left to right, and the words that describe it."""

    objects: tuple[DrawnObject, ...]
    background: str
    size: tuple[int, int] = (0, 0)  # (width, height) of the drawn image the boxes are in

    def triples(self) -> set[tuple[str, str, str]]:
        """{(colour, shape, side)}: what a correct caption names."""
        return {(o.colour, o.shape, o.side) for o in self.objects}

    def caption(self, length: str = "normal") -> str:
        """The reference caption: short names the shapes, normal adds sides, long adds sizes and background."""
        if length == "short":
            return " and ".join(f"{_article(o.phrase)} {o.phrase}" for o in self.objects)
        parts = []
        for o in self.objects:
            size = "small " if length == "long" and o.size < SMALL else ""
            size = "large " if length == "long" and o.size >= LARGE else size
            words = f"{size}{o.phrase}"
            parts.append(f"{_article(words)} {words} {_where(o.side)}")
        text = " and ".join(parts)
        if length == "long":
            text += f" on a {BACKGROUND_WORDS[self.background]} background"
        return text


def _article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def _where(side: str) -> str:
    return "in the centre" if side == "centre" else f"on the {side}"


def parse_caption(text: str) -> set[tuple[str, str, str]]:
    """Read `a red circle on the left and a blue square ...` back into {(colour, shape, side)}.

    A phrase without a recognisable side gets side `""`, so it never matches the truth.
    """
    found = set()
    words = text.lower().replace(",", " ").replace(".", " ").split()
    for i, word in enumerate(words):
        if word in SHAPES and i > 0 and words[i - 1] in COLOURS:
            following = words[i + 1 : i + 5]
            side = next((w for w in following if w in SIDES), "")
            found.add((words[i - 1], word, side))
    return found


def random_scene(
    rng: random.Random,
    *,
    objects: int | None = None,
    nuisance: bool = True,
    min_size: float = MIN_SIZE,
    max_size: float = MAX_SIZE,
    partly_out: float = 0.1,
) -> SceneSpec:
    """A scene as training draws them: 1 or 2 shapes (`objects` fixes it) on distinct sides."""
    count = objects if objects is not None else rng.choice((1, 2))
    sides = rng.sample(SIDES, count)
    # Two shapes on neighbouring sides must not overlap: cap their size.
    top = max_size if count == 1 else min(max_size, 0.42)
    shapes = []
    for side in sides:
        size = rng.uniform(min_size, max(min_size, top))
        low, high = _SIDE_SPANS[side]
        x = rng.uniform(low, high)
        if side != "centre" and rng.random() < partly_out:
            # Cut by the frame's edge (of a 4:3 frame), with at least about 60 % of the shape inside.
            inside = size * 0.75 / 2 * rng.uniform(0.2, 0.7)
            x = inside if side == "left" else 1.0 - inside
        shapes.append(
            ShapeSpec(
                colour=rng.choice(tuple(COLOURS)),
                shape=rng.choice(SHAPES),
                side=side,
                size=size,
                x=x,
                y=rng.uniform(0.3, 0.7),
                rotation=rng.uniform(-25, 25),
            )
        )
    camera = random_nuisance(rng) if nuisance else Nuisance()
    return SceneSpec(tuple(shapes), rng.choice(BACKGROUNDS), camera, seed=rng.randrange(2**31))


def random_nuisance(rng: random.Random) -> Nuisance:
    """A camera somewhere between clean and a cheap webcam in bad light."""
    return Nuisance(
        gain=rng.uniform(0.7, 1.25),
        white_balance=(rng.uniform(0.85, 1.15), rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)),
        tilt=rng.uniform(-6, 6),
        perspective=rng.uniform(0.0, 0.05),
        blur=rng.choice((0.0, 0.0, rng.uniform(0.3, 1.2))),
        noise=rng.uniform(0.0, 12.0),
        jpeg_quality=rng.choice((None, rng.randint(40, 95))),
    )


def draw_scene(spec: SceneSpec, size: tuple[int, int] = (128, 96)) -> tuple[Image.Image, Truth]:
    """Draw `spec` as an RGB image of `size` (width, height) and return it with its ground truth."""
    width, height = size
    rng = np.random.default_rng(spec.seed)
    image = _background(spec.background, width, height, rng)
    short = min(width, height)
    drawn = []
    for shape in spec.objects:
        cx = (shape.x if shape.x is not None else sum(_SIDE_SPANS[shape.side]) / 2) * width
        cy = (shape.y if shape.y is not None else 0.5) * height
        half = shape.size * short / 2
        _draw_shape(image, shape, cx, cy, half)
        box = (
            max(0, round(cx - half)),
            max(0, round(cy - half)),
            min(width, round(cx + half)),
            min(height, round(cy + half)),
        )
        drawn.append(DrawnObject(shape.colour, shape.shape, shape.side, shape.size, box))
    image = _camera(image, spec.nuisance, rng)
    drawn.sort(key=lambda o: SIDES.index(o.side))
    return image, Truth(tuple(drawn), spec.background, (width, height))


def with_nuisance(spec: SceneSpec, nuisance: Nuisance) -> SceneSpec:
    """The same scene through another camera."""
    return replace(spec, nuisance=nuisance)


# ------------------------------------------------------------------------------------------------
# Drawing


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A background colour: grey-ish, so no shape colour is lost against it."""
    grey = rng.uniform(70, 190)
    return np.clip(grey + rng.uniform(-15, 15, 3), 0, 255)


def _background(kind: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    if kind == "plain":
        pixels = np.broadcast_to(_muted(rng), (height, width, 3))
    elif kind == "gradient":
        a, b = _muted(rng), _muted(rng)
        angle = rng.uniform(0, math.pi)
        xs, ys = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
        t = (xs * math.cos(angle) + ys * math.sin(angle)) / (abs(math.cos(angle)) + abs(math.sin(angle)))
        t = (t - t.min()) / max(1e-6, t.max() - t.min())
        pixels = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == "noise":
        base = _muted(rng)
        coarse = rng.normal(0, 25, (max(2, height // 8), max(2, width // 8), 1))
        grain = np.asarray(
            Image.fromarray(np.clip(coarse[..., 0] + 128, 0, 255).astype(np.uint8)).resize(
                (width, height), Image.Resampling.BILINEAR
            ),
            dtype=np.float64,
        )
        pixels = base + (grain[..., None] - 128) + rng.normal(0, 6, (height, width, 1))
    elif kind == "stripes":
        a, b = _muted(rng), _muted(rng)
        period = rng.uniform(6, 24) * width / 128
        angle = rng.uniform(0, math.pi)
        xs, ys = np.meshgrid(np.arange(width), np.arange(height))
        band = (np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period) > 0)[..., None]
        pixels = np.where(band, a, b)
    else:  # clutter: thin lines and small blobs in muted colours, smaller than any shape
        image = Image.new("RGB", (width, height), tuple(int(v) for v in _muted(rng)))
        draw = ImageDraw.Draw(image)
        scale = min(width, height) / 96
        for _ in range(int(rng.integers(6, 14))):
            colour = tuple(int(v) for v in _muted(rng))
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            if rng.random() < 0.5:
                dx, dy = rng.uniform(-40, 40, 2) * scale
                draw.line((x, y, x + dx, y + dy), fill=colour, width=max(1, int(rng.integers(1, 3) * scale)))
            else:
                r = rng.uniform(2, 6) * scale
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        return image
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _outline(shape: str, cx: float, cy: float, half: float, rotation: float) -> list[tuple[float, float]]:
    if shape == "square":
        points = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
        points = [(x * 0.85, y * 0.85) for x, y in points]  # same visual weight as the circle
    elif shape == "triangle":
        points = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        points = [(x, y + 0.2) for x, y in points]  # centre the triangle's box on (cx, cy)
    elif shape == "star":
        points = []
        for i in range(10):
            angle = -math.pi / 2 + i * math.pi / 5
            radius = 1.0 if i % 2 == 0 else 0.45
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
    else:  # circle: a polygon fine enough to be round at any size we draw
        points = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    turn = math.radians(rotation)
    cos, sin = math.cos(turn), math.sin(turn)
    return [(cx + half * (x * cos - y * sin), cy + half * (x * sin + y * cos)) for x, y in points]


def _draw_shape(image: Image.Image, shape: ShapeSpec, cx: float, cy: float, half: float) -> None:
    """Draw with 4x supersampling in a patch around the shape, so edges are anti-aliased like a camera's."""
    ss = 4
    x0, y0 = math.floor(cx - half * 1.1) - 1, math.floor(cy - half * 1.1) - 1
    x1, y1 = math.ceil(cx + half * 1.1) + 1, math.ceil(cy + half * 1.1) + 1
    mask = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    rotation = 0.0 if shape.shape == "circle" else shape.rotation
    points = [((x - x0) * ss, (y - y0) * ss) for x, y in _outline(shape.shape, cx, cy, half, rotation)]
    ImageDraw.Draw(mask).polygon(points, fill=255)
    mask = mask.resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
    fill = Image.new("RGB", mask.size, COLOURS[shape.colour])
    image.paste(fill, (x0, y0), mask)


def _camera(image: Image.Image, nuisance: Nuisance, rng: np.random.Generator) -> Image.Image:
    if nuisance.tilt or nuisance.perspective:
        image = _warp(image, nuisance.tilt, nuisance.perspective, rng)
    if nuisance.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(nuisance.blur))
    if nuisance.gain != 1.0 or nuisance.white_balance != (1.0, 1.0, 1.0) or nuisance.noise > 0:
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels * (np.asarray(nuisance.white_balance, dtype=np.float32) * nuisance.gain)
        if nuisance.noise > 0:
            pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(nuisance.noise)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if nuisance.jpeg_quality is not None:
        image = jpeg_round_trip(image, nuisance.jpeg_quality)
    return image


def _warp(image: Image.Image, tilt: float, perspective: float, rng: np.random.Generator) -> Image.Image:
    """Rotate about the centre and move each corner a little: a hand-held camera, slightly askew.

    The warp maps output corners to input points, zooming in a little so no empty corner shows.
    """
    width, height = image.size
    turn = math.radians(tilt)
    zoom = 1.0 / (1.0 + abs(math.sin(turn)) * 1.4 + perspective * 2)
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    source = []
    for x, y in corners:
        x, y = x * zoom, y * zoom
        rx, ry = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        jx, jy = rng.uniform(-perspective, perspective, 2)
        source.append(((rx + jx + 1) / 2 * width, (ry + jy + 1) / 2 * height))
    target = [(0, 0), (width, 0), (width, height), (0, height)]
    coefficients = _perspective_coefficients(target, source)
    return image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)


def _perspective_coefficients(
    target: list[tuple[float, float]], source: list[tuple[float, float]]
) -> tuple[float, ...]:
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.asarray(rows, dtype=np.float64)
    b = np.asarray([c for point in source for c in point], dtype=np.float64)
    return tuple(float(v) for v in np.linalg.solve(a, b))


def jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    """Encode and decode as JPEG, as a camera or the page does."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    decoded = Image.open(buffer)
    decoded.load()
    return decoded.convert("RGB")
