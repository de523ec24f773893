"""A fast, deterministic Captioner for unit tests of the engine and server ONLY.

End-to-end and browser tests never use it: they run random-weight checkpoints of real
architectures through the real loading path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from PIL import ImageStat

from camcap.models.base import Caption, Captioner, Event, ModelInfo, Request, TaskKind, Timings, Token


class FakeCaptioner(Captioner):
    """Describes a frame by its mean colour, one word per `token_delay` seconds.

    `seen` records the mean RGB of every frame it was given, so tests can check which frame
    reached the model; `closed_early` counts generations abandoned by their consumer.
    """

    def __init__(self, *, token_delay: float = 0.0, words: int = 4, max_batch: int = 1, input_size: int = 384) -> None:
        self.token_delay = token_delay
        self.words = words
        self._info = ModelInfo(
            name="fake",
            backend="fake",
            device="cpu",
            dtype="float32",
            tasks=(TaskKind.CAPTION, TaskKind.QUERY),
            input_size=input_size,
            max_batch=max_batch,
        )
        self.seen: list[tuple[int, int, int]] = []
        self.batches: list[int] = []
        self.closed_early = 0
        self.lock = threading.Lock()
        self.is_setup = False

    @property
    def info(self) -> ModelInfo:
        return self._info

    def setup(self) -> None:
        self.is_setup = True

    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        for _, task in requests:
            self._info.check_task(task)
        return self._run(requests)

    def _run(self, requests: Sequence[Request]) -> Iterator[Event]:
        start = time.perf_counter()
        colours = [tuple(int(c) for c in ImageStat.Stat(image.convert("RGB")).mean) for image, _ in requests]
        with self.lock:
            self.seen.extend(colours)  # type: ignore[arg-type]
            self.batches.append(len(requests))
        texts = [f"colour {r} {g} {b}".split() for r, g, b in colours]
        finished = False
        first: float | None = None
        try:
            for step in range(self.words):
                if self.token_delay:
                    time.sleep(self.token_delay)
                first = first if first is not None else time.perf_counter()
                for index, words in enumerate(texts):
                    word = words[step] if step < len(words) else "more"
                    yield Token(index, word if step == 0 else " " + word)
            end = time.perf_counter()
            for index, ((_, task), words) in enumerate(zip(requests, texts, strict=True)):
                padded = words + ["more"] * (self.words - len(words))
                yield Caption(
                    index=index,
                    text=" ".join(padded[: self.words]),
                    task=task,
                    timings=Timings(
                        preprocess_ms=0.0,
                        first_token_ms=((first or end) - start) * 1000,
                        decode_ms=(end - (first or end)) * 1000,
                        total_ms=(end - start) * 1000,
                        tokens=self.words,
                    ),
                )
            finished = True
        finally:
            if not finished:
                with self.lock:
                    self.closed_early += 1
