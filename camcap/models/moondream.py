"""Moondream 2, camcap's default model: captions, questions, detection and pointing on a frame.

Moondream's Python API is its own (remote code on the Hub, not a transformers architecture):
`encode_image(image)`, `caption(image, length, stream=)`, `query(image, question, stream=)`,
`detect(image, object)` and `point(image, object)`, where `image` is a PIL image or the result of
`encode_image`. This adapter maps camcap's tasks onto those calls, streams their text, and times
the vision encoding apart from the text generation.

Importing this module is cheap (the registry reads `DESCRIPTION` for `camcap models`): torch and
transformers are imported in `setup()` only.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camcap.models._moondream_tiling import HIGH_DETAIL_SIZE, LOW_DETAIL_SIZE, crop_count
from camcap.models.base import Box, Caption, Captioner, Event, ModelInfo, Point, Request, Task, TaskKind, Timings, Token
from camcap.models.options import Detail, ModelOptions

__all__ = [
    "APPROX_SIZE_GB",
    "DEFAULT_REVISION",
    "DESCRIPTION",
    "MOONDREAM_REPO",
    "TOKENIZER_REPO",
    "HubDownload",
    "MoondreamCaptioner",
    "crop_count",
    "preferred_input_size",
    "required_downloads",
    "snapshot_folders",
]

logger = logging.getLogger(__name__)

SPEC = "moondream2"
MOONDREAM_REPO = "vikhyatk/moondream2"
# The Hub repo holds every Moondream 2 release and its model card asks production users to pin
# one, because `main` moves. 2025-06-21 is the last Moondream 2 release (the card: "the latest
# (2025-06-21) release of Moondream 2"; Moondream 3 is a separate repo), and its API has everything
# camcap uses: caption(length="short"|"normal"|"long", stream=True), query(stream=True), detect,
# point and encode_image. Third-party notes report this tag as commit
# 9a7d4024050840e001defacec2b00727e89149e6 (not checked here: the Hub is unreachable).
DEFAULT_REVISION = "2025-06-21"
# The remote code builds its tokenizer from this second repo at construction (see _moondream_load).
TOKENIZER_REPO = "moondream/starmie-v1"
# 1.9 B parameters stored as bfloat16: reported as ~3.7 GB on disk for this revision (the exact
# file size was not checked here), plus ~4 MB of tokenizer.
APPROX_SIZE_GB = 3.7
_TOKENIZER_SIZE_GB = 0.004
DESCRIPTION = (
    f"Moondream 2 ({MOONDREAM_REPO}@{DEFAULT_REVISION}), the default: captions, questions, "
    "object detection and pointing; 1.9 B parameters, fast on a GPU, slow on a CPU."
)
TASKS = (TaskKind.CAPTION, TaskKind.QUERY, TaskKind.DETECT, TaskKind.POINT)


@dataclass(frozen=True)
class HubDownload:
    """One Hub snapshot Moondream needs on disk (what `camcap pull moondream2` fetches)."""

    repo_id: str
    revision: str | None  # None: the repo's main branch
    approx_size_gb: float


def required_downloads(revision: str | None = None) -> tuple[HubDownload, ...]:
    """The snapshots `setup()` needs for `moondream2[@revision]`, largest first."""
    return (
        HubDownload(MOONDREAM_REPO, revision or DEFAULT_REVISION, APPROX_SIZE_GB),
        # Unpinned, as the remote code itself fetches it (no release tag of it is known to camcap).
        HubDownload(TOKENIZER_REPO, None, _TOKENIZER_SIZE_GB),
    )


def preferred_input_size(detail: Detail) -> int:
    """Short side, in pixels, of the frames Moondream should get: 378 (2 crops) or 644 (9 crops).
    See `_moondream_tiling` for the arithmetic."""
    return HIGH_DETAIL_SIZE if detail == "high" else LOW_DETAIL_SIZE


class MoondreamCaptioner(Captioner):
    """Moondream 2 behind the Captioner protocol.

    Requests run one after another (Moondream's API takes one image per call and keeps a single
    KV cache), so `info.max_batch` is 1: batching frames of different streams would only make the
    last stream wait for the others. `generate` still accepts several requests, which is how
    several tasks on one frame share a single image encoding (same image object -> encoded once).
    """

    def __init__(
        self, options: ModelOptions | None = None, *, revision: str | None = None, spec: str | None = None
    ) -> None:
        self.options = options or ModelOptions()
        self._revision = revision or DEFAULT_REVISION
        self._spec = spec or (SPEC if revision is None else f"{SPEC}@{revision}")
        self._model: Any = None
        self._info: ModelInfo | None = None
        # Held while a generation runs: two interleaved generations would share one KV cache.
        self._busy = threading.Lock()

    @classmethod
    def _from_model(
        cls,
        model: Any,
        options: ModelOptions | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        revision: str | None = None,
    ) -> MoondreamCaptioner:
        """A captioner around an already loaded Moondream model object (skips `setup()`)."""
        captioner = cls(options, revision=revision)
        captioner._attach(model, device, dtype)
        return captioner

    @property
    def revision(self) -> str:
        """The Hub revision of vikhyatk/moondream2 this captioner loads."""
        return self._revision

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("MoondreamCaptioner.info is known after setup(); call setup() first.")
        return self._info

    def setup(self) -> None:
        """Find (or download) the pinned snapshot and load it on the best device."""
        if self._model is not None:
            return
        from camcap.models._moondream_load import compile_model, load_moondream
        from camcap.models._quiet import quiet_load
        from camcap.models.device import choose_device
        from camcap.models.registry import hub_cache_dir

        model_folder, tokenizer_folder = snapshot_folders(self.options, self._revision)
        choice = choose_device(self.options.device, self.options.dtype)
        if choice.device == "cpu":
            logger.warning(
                "Moondream 2 runs on the CPU in %s (%s): expect seconds per caption and %s of memory. "
                "A CUDA GPU or Apple Silicon (MPS) is many times faster; `camcap doctor` explains the choice.",
                choice.dtype,
                choice.reason,
                "about 8 GB" if choice.dtype == "float32" else "about 4 GB",
            )
        if self._revision != DEFAULT_REVISION:
            logger.warning(
                "Loading %s@%s: its Python code runs with trust_remote_code and camcap has only checked %s.",
                MOONDREAM_REPO,
                self._revision,
                DEFAULT_REVISION,
            )
        # trust_remote_code, in effect: the code executed is exactly the snapshot of MOONDREAM_REPO at
        # the pinned revision (or the one the user named in the spec), read from the local cache.
        # Nothing else camcap loads runs remote code.
        with quiet_load():  # both snapshots are local by now: no download bar to hide
            model = load_moondream(
                model_folder,
                code_source=MOONDREAM_REPO,
                code_revision=self._revision,
                cache_dir=hub_cache_dir(self.options),
                hub_tokenizers={TOKENIZER_REPO: tokenizer_folder},
                device=choice.device,
                dtype=choice.dtype,
            )
        if self.options.compile and not compile_model(model):
            logger.warning("--compile has no effect: this Moondream revision has no compile() method.")
        self._attach(model, choice.device, choice.dtype)

    def _attach(self, model: Any, device: str, dtype: str) -> None:
        self._model = model
        self._info = ModelInfo(
            name=self._spec,
            backend="moondream",
            device=device,
            dtype=dtype,
            tasks=TASKS,
            input_size=preferred_input_size(self.options.detail),
            max_batch=1,
            revision=self._revision,
        )

    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        """Run each request in order: one `Token` per streamed piece of text, then its `Caption`."""
        info = self.info  # raises before setup()
        for _, task in requests:
            info.check_task(task)
        return self._run(list(requests))

    def close(self) -> None:
        """Drop the model; on CUDA also return its memory to the driver."""
        on_cuda = self._info is not None and self._info.device.startswith("cuda")
        self._model, self._info = None, None  # generate() now asks for setup() again
        if on_cuda:
            import torch

            torch.cuda.empty_cache()

    def _run(self, requests: list[Request]) -> Iterator[Event]:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "Moondream runs one generation at a time and another one is still open; "
                "finish or close() the previous generate() iterator first."
            )
        try:
            start = time.perf_counter()
            # Keyed by object identity: only images of this batch are alive, so ids cannot be reused.
            encodings: dict[int, tuple[Any, float]] = {}
            for index, (image, task) in enumerate(requests):
                reused = id(image) in encodings
                if not reused:
                    began = time.perf_counter()
                    # Always encode first, even for a single task: it times the vision stage on its
                    # own, and at 2025-06-21 passing `settings` with a PIL image fails inside
                    # `encode_image` (it reads settings["variant"]); an encoded image avoids that.
                    encodings[id(image)] = (self._model.encode_image(image), _ms(began))
                encoded, encode_ms = encodings[id(image)]
                extras: dict[str, object] = {"crops": crop_count(*image.size), "encode_reused": reused}
                if task.kind in (TaskKind.CAPTION, TaskKind.QUERY):
                    yield from self._text(index, task, encoded, encode_ms, start, extras)
                else:
                    yield from self._locate(index, task, encoded, encode_ms, start, extras)
        finally:
            self._busy.release()

    def _text(
        self, index: int, task: Task, encoded: Any, encode_ms: float, start: float, extras: dict[str, object]
    ) -> Iterator[Event]:
        # Greedy (temperature 0) like camcap's transformers backend: a still scene keeps its caption
        # instead of being re-worded at every frame. Moondream has no minimum length.
        settings = {"max_tokens": self.options.max_new_tokens, "temperature": 0.0}
        began = time.perf_counter()
        if task.kind is TaskKind.CAPTION:
            stream = self._model.caption(encoded, length=task.length, stream=True, settings=settings)["caption"]
        else:
            stream = self._model.query(encoded, task.question, stream=True, settings=settings)["answer"]
        pieces = [stream] if isinstance(stream, str) else stream
        first: float | None = None
        parts: list[str] = []
        try:
            for delta in _trimmed(pieces):
                first = first if first is not None else time.perf_counter()
                parts.append(delta)
                yield Token(index, delta)
        finally:
            # Closing the model's generator stops its decode loop: no token is computed after a
            # newer frame made this one stale.
            close = getattr(stream, "close", None)
            if callable(close):
                close()
        end = time.perf_counter()
        text = "".join(parts)
        yield Caption(
            index=index,
            text=text,
            task=task,
            timings=self._timings(start, began, first, end, encode_ms, self._count_tokens(text, len(parts))),
            extras=extras,
        )

    def _locate(
        self, index: int, task: Task, encoded: Any, encode_ms: float, start: float, extras: dict[str, object]
    ) -> Iterator[Event]:
        target = (task.target or "").strip()
        began = time.perf_counter()
        boxes: tuple[Box, ...] = ()
        points: tuple[Point, ...] = ()
        if task.kind is TaskKind.DETECT:
            boxes = _boxes(self._model.detect(encoded, target).get("objects", ()))
            found, steps = len(boxes), 3  # x, y and size per object
        else:
            points = _points(self._model.point(encoded, target).get("points", ()))
            found, steps = len(points), 2  # x and y per object
        end = time.perf_counter()
        text = f"{found} × {target}"
        # One delta with the whole text, so that joining a request's deltas always gives its text.
        yield Token(index, text)
        yield Caption(
            index=index,
            text=text,
            task=task,
            timings=self._timings(start, began, end, end, encode_ms, found * steps),
            boxes=boxes,
            points=points,
            extras=extras,
        )

    @staticmethod
    def _timings(start: float, began: float, first: float | None, end: float, encode_ms: float, tokens: int) -> Timings:
        first = first if first is not None else end
        return Timings(
            # Moondream prepares its crops inside encode_image: that time is in encode_ms.
            preprocess_ms=0.0,
            # From the start of text generation, which begins after the separate image encoding:
            # encode_ms + first_token_ms is the time to first token of a fresh frame.
            first_token_ms=(first - began) * 1000,
            decode_ms=(end - first) * 1000,
            total_ms=(end - start) * 1000,
            tokens=tokens,
            encode_ms=encode_ms,
        )

    def _count_tokens(self, text: str, pieces: int) -> int:
        # The stream yields words, not tokens; re-encoding the text with the model's own tokenizer
        # counts what it generated (up to merges across pieces). Without one, count the pieces.
        tokenizer = getattr(getattr(self._model, "model", None), "tokenizer", None)
        if tokenizer is None or not text:
            return pieces
        return len(tokenizer.encode(text).ids)


def _trimmed(pieces: Iterable[str]) -> Iterator[str]:
    """The stream without leading and trailing whitespace, still lazily: trailing whitespace of a
    piece is held back until more text follows (Moondream flushes words with their space), so
    joining the output equals the stripped full text."""
    started = False
    pending = ""
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        body = piece.rstrip()
        if body:
            yield pending + body
            pending = piece[len(body) :]
        else:
            pending += piece


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def _numbers(item: object, keys: tuple[str, ...]) -> tuple[float, ...] | None:
    if not isinstance(item, Mapping):
        return None
    try:
        values = tuple(float(item[key]) for key in keys)
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _boxes(objects: Iterable[object]) -> tuple[Box, ...]:
    """Moondream's `{"x_min", "y_min", "x_max", "y_max"}` boxes, clamped to the frame (they are
    centre +- size / 2 and can overhang it). Boxes wholly outside it or malformed are dropped."""
    boxes = []
    for item in objects:
        values = _numbers(item, ("x_min", "y_min", "x_max", "y_max"))
        if values is None:
            logger.warning("Moondream returned a malformed box, skipped: %r", item)
            continue
        x0, x1 = sorted((_unit(values[0]), _unit(values[2])))
        y0, y1 = sorted((_unit(values[1]), _unit(values[3])))
        if x1 > x0 and y1 > y0:
            boxes.append(Box(x0, y0, x1, y1))
    return tuple(boxes)


def _points(items: Iterable[object]) -> tuple[Point, ...]:
    """Moondream's `{"x", "y"}` points, clamped to the frame; malformed ones are dropped."""
    points = []
    for item in items:
        values = _numbers(item, ("x", "y"))
        if values is None:
            logger.warning("Moondream returned a malformed point, skipped: %r", item)
            continue
        points.append(Point(_unit(values[0]), _unit(values[1])))
    return tuple(points)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def snapshot_folders(options: ModelOptions, revision: str | None = None) -> list[Path]:
    """Where `setup()` would find each required snapshot, downloading what is missing if allowed
    (the body of `camcap pull moondream2`)."""
    from camcap.models.hub import resolve_snapshot
    from camcap.models.registry import hub_cache_dir

    spec = SPEC if revision in (None, DEFAULT_REVISION) else f"{SPEC}@{revision}"
    return [
        resolve_snapshot(
            download.repo_id,
            revision=download.revision,
            cache_dir=hub_cache_dir(options),
            allow_download=options.allow_download,
            approx_size_gb=download.approx_size_gb,
            spec=spec,
        )
        for download in required_downloads(revision)
    ]
