"""Turn the token ids `model.generate` streams into per-item text deltas.

transformers' `TextIteratorStreamer` only handles a batch of one. `BatchStreamer` takes every
row of a batch, decodes each row on its own, and reports three things through a callback (it
runs on the generation thread, so the callback must be thread-safe, e.g. `queue.Queue.put`):
`RowText` deltas as words complete, `RowDone` when a row reaches an end token (or generation
ends), with the row's final text and token count. The deltas of a row always add up to its
final text, because both come from the same decode of the same ids.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

if TYPE_CHECKING:
    import torch

_LAST_SPACE = re.compile(r"\s(?=\S*$)")


@dataclass(frozen=True)
class RowText:
    """New text for row `row` (a delta)."""

    row: int
    text: str


@dataclass(frozen=True)
class RowDone:
    """Row `row` is complete: its full text, its new-token count and when it ended, and its token
    ids (stop ids left out) for results that are not plain text (Florence-2's boxes)."""

    row: int
    text: str
    tokens: int
    finished_at: float
    ids: tuple[int, ...] = ()


StreamEvent = RowText | RowDone


class BatchStreamer(BaseStreamer):
    """A `generate(streamer=...)` target for batches of any size.

    `decode` turns one row's ids into text; `stop_ids` are the ids that end a row (they count
    as generated tokens but are not decoded). The first `put` is the prompt and is skipped, as
    `generate` always sends the prompt (or the decoder's start tokens) first.
    """

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        batch_size: int,
        stop_ids: frozenset[int],
        emit: Callable[[StreamEvent], object],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._decode = decode
        self._stop_ids = stop_ids
        self._emit = emit
        self._clock = clock
        self._prompt_seen = False
        self._ids: list[list[int]] = [[] for _ in range(batch_size)]
        self._counts = [0] * batch_size
        self._printed = [""] * batch_size
        self._done = [False] * batch_size
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        """Called by `generate` with the prompt, then with one new token per row each step."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        now = self._clock()
        if self.first_token_at is None:
            self.first_token_at = now
        tokens = value.reshape(-1).tolist()
        if len(tokens) != len(self._ids):
            raise ValueError(f"BatchStreamer expected {len(self._ids)} tokens per step, got {len(tokens)}.")
        for row, token in enumerate(tokens):
            if self._done[row]:
                continue  # generate pads finished rows; those are not tokens of the row
            self._counts[row] += 1
            if token in self._stop_ids:
                self._finish(row, now)
            else:
                self._ids[row].append(token)
                self._flush(row, final=False)

    def end(self) -> None:
        """Called by `generate` when it stops: every row still open ends now."""
        now = self._clock()
        for row, done in enumerate(self._done):
            if not done:
                self._finish(row, now)

    @property
    def finished(self) -> bool:
        return all(self._done)

    def _finish(self, row: int, now: float) -> None:
        self._flush(row, final=True)
        self._done[row] = True
        self._emit(RowDone(row, self._printed[row], self._counts[row], now, tuple(self._ids[row])))

    def _flush(self, row: int, *, final: bool) -> None:
        """Emit the row's text that can no longer change."""
        stable = self._decode(self._ids[row]).strip()
        if not final:
            # Hold back the last word: the next token may continue it ("walk" + "ing"), and a
            # byte-level tokenizer shows half a character as U+FFFD until the rest arrives.
            match = _LAST_SPACE.search(stable)
            stable = stable[: match.start()].rstrip() if match else ""
            if stable.endswith("\ufffd"):
                return
        printed = self._printed[row]
        if stable.startswith(printed):
            delta = stable[len(printed) :]
        elif final:
            # The tokenizer rewrote text it had already shown (rare: a clean-up rule reaching
            # back past a word boundary). Shown text cannot be taken back, so the final text is
            # what was shown plus the rest: the deltas still add up to it.
            delta = stable[len(_common_prefix(stable, printed)) :]
        else:
            return  # wait for the end, the rewrite may settle
        if delta:
            self._printed[row] = printed + delta
            self._emit(RowText(row, delta))


def _common_prefix(a: str, b: str) -> str:
    end = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        end += 1
    return a[:end]


class CancelCriteria(StoppingCriteria):
    """Stops every row of `generate` at the next step once `event` is set (consumer went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor | None, **kwargs: object) -> torch.Tensor:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
