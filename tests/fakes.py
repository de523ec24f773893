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

# No test waits on the fake for longer than this: a bug fails the test instead of hanging it.
GATE_TIMEOUT = 10.0


class FakeCaptioner(Captioner):
    """Describes a frame by its mean colour, one word per `token_delay` seconds.

    `seen` records the mean RGB of every frame it was given, so tests can check which frame
    reached the model; `closed_early` counts generations abandoned by their consumer.

    `gated=True` makes every generation wait, after recording what it was given and before its
    first token, until the test calls `allow()`: the test decides exactly when the model is busy.
    `setup_gate` holds `setup()` until set (the "model loading" state); `setup_error` is raised by
    `setup()`; `fail_with` is raised by a generation at its first token.
    """

    def __init__(
        self,
        *,
        token_delay: float = 0.0,
        words: int = 4,
        max_batch: int = 1,
        concurrency: int = 1,
        input_size: int = 384,
        tasks: tuple[TaskKind, ...] = (TaskKind.CAPTION, TaskKind.QUERY),
        gated: bool = False,
        setup_gate: threading.Event | None = None,
        setup_error: Exception | None = None,
        fail_with: Exception | None = None,
    ) -> None:
        self.token_delay = token_delay
        self.words = words
        self.gated = gated
        self.setup_gate = setup_gate
        self.setup_error = setup_error
        self.fail_with = fail_with
        self._tickets = threading.Semaphore(0)
        self._info = ModelInfo(
            name="fake",
            backend="fake",
            device="cpu",
            dtype="float32",
            tasks=tasks,
            input_size=input_size,
            max_batch=max_batch,
            concurrency=concurrency,
        )
        self.seen: list[tuple[int, int, int]] = []
        self.sizes: list[tuple[int, int]] = []  # the size of every frame it was given
        self.batches: list[int] = []
        self.closed_early = 0
        self.lock = threading.Lock()
        self.is_setup = False
        self.is_closed = False

    @property
    def info(self) -> ModelInfo:
        return self._info

    def setup(self) -> None:
        if self.setup_gate is not None and not self.setup_gate.wait(GATE_TIMEOUT):
            raise TimeoutError("FakeCaptioner.setup waited too long for its setup_gate")
        if self.setup_error is not None:
            raise self.setup_error
        self.is_setup = True

    def close(self) -> None:
        self.is_closed = True

    def allow(self, generations: int = 1) -> None:
        """Let `generations` gated generations past their gate."""
        for _ in range(generations):
            self._tickets.release()

    @property
    def started(self) -> int:
        """How many generations have begun (each records its batch before its gate)."""
        with self.lock:
            return len(self.batches)

    def generate(self, requests: Sequence[Request]) -> Iterator[Event]:
        for _, task in requests:
            self._info.check_task(task)
        return self._run(requests)

    def _run(self, requests: Sequence[Request]) -> Iterator[Event]:
        start = time.perf_counter()
        colours = [tuple(int(c) for c in ImageStat.Stat(image.convert("RGB")).mean) for image, _ in requests]
        with self.lock:
            self.seen.extend(colours)  # type: ignore[arg-type]
            self.sizes.extend(image.size for image, _ in requests)
            self.batches.append(len(requests))
        texts = [f"colour {r} {g} {b}".split() for r, g, b in colours]
        finished = False
        first: float | None = None
        try:
            if self.gated and not self._tickets.acquire(timeout=GATE_TIMEOUT):
                raise TimeoutError("FakeCaptioner waited too long for allow(); the test forgot to call it")
            if self.fail_with is not None:
                raise self.fail_with
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
