"""The Captioner protocol: what every model backend offers, and the records it yields.

A backend is constructed cheaply (no I/O), loads its weights in `setup()`, and then answers
`generate(batch)` with a lazy iterator of events: `Token` deltas as text is produced, then one
`Caption` per item with its timings. Nothing above `camcap.models` imports torch or
transformers; everything it needs to know about a model is in `ModelInfo`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from camcap.errors import UnsupportedTaskError

if TYPE_CHECKING:
    from PIL import Image

CaptionLength = Literal["short", "normal", "long"]
CAPTION_LENGTHS: tuple[CaptionLength, ...] = ("short", "normal", "long")


class TaskKind(str, enum.Enum):
    """What the model is asked to do with a frame."""

    CAPTION = "caption"  # describe the frame (length short | normal | long)
    QUERY = "query"  # answer a free question about the frame
    DETECT = "detect"  # bounding boxes of a named object (Moondream)
    POINT = "point"  # centre points of a named object (Moondream)


@dataclass(frozen=True)
class Task:
    """One request about one frame. Build it with the class methods; invalid tasks raise."""

    kind: TaskKind = TaskKind.CAPTION
    length: CaptionLength = "normal"
    question: str | None = None  # QUERY only
    target: str | None = None  # DETECT / POINT only: the object to find

    def __post_init__(self) -> None:
        if self.length not in CAPTION_LENGTHS:
            raise ValueError(f"Invalid caption length {self.length!r}, expected one of: {', '.join(CAPTION_LENGTHS)}")
        if self.kind is TaskKind.QUERY and not (self.question or "").strip():
            raise ValueError("A query task needs a non-empty question.")
        if self.kind in (TaskKind.DETECT, TaskKind.POINT) and not (self.target or "").strip():
            raise ValueError(f"A {self.kind.value} task needs the name of an object to look for.")

    @classmethod
    def caption(cls, length: CaptionLength = "normal") -> Task:
        return cls(TaskKind.CAPTION, length=length)

    @classmethod
    def query(cls, question: str) -> Task:
        return cls(TaskKind.QUERY, question=question)

    @classmethod
    def detect(cls, target: str) -> Task:
        return cls(TaskKind.DETECT, target=target)

    @classmethod
    def point(cls, target: str) -> Task:
        return cls(TaskKind.POINT, target=target)

    def describe(self) -> str:
        """A short human label, e.g. `caption (short)` or `query: what colour is the car?`."""
        if self.kind is TaskKind.CAPTION:
            return f"caption ({self.length})"
        if self.kind is TaskKind.QUERY:
            return f"query: {self.question}"
        return f"{self.kind.value}: {self.target}"


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of camcap needs to know about a loaded model."""

    name: str  # the spec the user gave, e.g. "moondream2" or "random:blip-tiny"
    backend: str  # "transformers", "moondream", ...
    device: str  # "cuda:0", "mps", "cpu"
    dtype: str  # "bfloat16", "float16", "float32"
    tasks: tuple[TaskKind, ...]
    # Frames are downscaled so that their *short* side is at most this many pixels before they
    # are sent (the browser does it before encoding). Chosen per model: the size its image
    # processor would resize to anyway, or Moondream's crop size, so no pixel is sent in vain.
    input_size: int
    max_batch: int = 1
    # How many `generate` calls the scheduler may run at once, each on its own worker thread. 1
    # (local models: one device, not thread-safe) unless the backend only waits on a server that
    # batches for itself (openai: up to --max-inflight requests in flight).
    concurrency: int = 1
    # True for random-weight checkpoints: their "captions" are meaningless words, and every place
    # that shows one says so.
    random_weights: bool = False
    revision: str | None = None
    # Where frames go when the model is another server (the openai: backend): its origin, e.g.
    # "https://vlm.example.com"; None when frames stay in this process.
    frames_sent_to: str | None = None
    # True when that server is beyond this machine and its private network: the log, GET /v1/info
    # and the page say so plainly.
    frames_leave_network: bool = False
    # True for camcap's own demo models (demo:shapes): real weights, but they only know the
    # drawn scenes they were trained on, and every place that shows the model says so.
    demo: bool = False

    def check_task(self, task: Task) -> None:
        """Raise `UnsupportedTaskError` naming the supported tasks if `task` is not one of them."""
        if task.kind not in self.tasks:
            supported = ", ".join(kind.value for kind in self.tasks)
            raise UnsupportedTaskError(
                f"The model {self.name!r} cannot do {task.kind.value!r}; it supports: {supported}."
            )


@dataclass(frozen=True)
class Timings:
    """Where the time of one item went, in milliseconds.

    For an item of a batch, the shared stages (preprocess, generation) are the batch's: every item
    of a batch waited for all of them. `total_ms` is wall-clock from the start of `generate` to
    this item's final caption, so `total_ms >= preprocess_ms + encode_ms + first_token_ms`.
    """

    preprocess_ms: float  # image processor / tokenizer (CPU work before the model runs)
    # From the start of generation to the first token. Includes vision encoding, unless the
    # backend times that separately in `encode_ms` (then encoding is excluded here).
    first_token_ms: float
    decode_ms: float  # from the first token to the last
    total_ms: float
    tokens: int  # new tokens generated for this item
    # Vision encoding alone, where the backend can time it separately (Moondream); else None.
    encode_ms: float | None = None


@dataclass(frozen=True)
class Box:
    """An object's bounding box, coordinates normalised to 0..1 of the frame's width and height."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float


@dataclass(frozen=True)
class Point:
    """An object's centre, normalised to 0..1 of the frame's width and height."""

    x: float
    y: float


@dataclass(frozen=True)
class Token:
    """A piece of text generated for item `index` of the batch (a delta, not the text so far)."""

    index: int
    text: str


@dataclass(frozen=True)
class Caption:
    """The final result for item `index` of the batch."""

    index: int
    text: str
    task: Task
    timings: Timings
    boxes: tuple[Box, ...] = ()  # DETECT results
    points: tuple[Point, ...] = ()  # POINT results
    extras: dict[str, object] = field(default_factory=dict)


Event = Token | Caption
Request = tuple["Image.Image", Task]


class Captioner(ABC):
    """Base class of every model backend.

    Subclasses implement `setup()` (load weights; the constructor must not do I/O), `info`,
    and `generate()`. `generate` validates every task before doing any work, then yields events
    lazily: closing the iterator early (the stream moved on to a newer frame) must stop the
    model's work as soon as it can and release what it held.
    """

    @property
    @abstractmethod
    def info(self) -> ModelInfo:
        """Model metadata. Valid after `setup()`."""

    @abstractmethod
    def setup(self) -> None:
        """Load weights onto the chosen device. Called once, before the first `generate`."""

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        """Caption a batch: yields `Token` deltas and exactly one `Caption` per request.

        Raises `UnsupportedTaskError` (before any work) if a task is not in `info.tasks`.
        """

    def caption(self, image: Image.Image, task: Task | None = None) -> Caption:
        """Convenience: run one frame and return its final `Caption`."""
        task = task or Task.caption()
        for event in self.generate([(image, task)]):
            if isinstance(event, Caption):
                return event
        raise RuntimeError(f"{type(self).__name__}.generate ended without a Caption; this is a bug in the backend.")

    def close(self) -> None:  # noqa: B027 - optional hook, most backends free memory on GC
        """Release the model and any device memory it holds."""

    def __enter__(self) -> Captioner:
        self.setup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
