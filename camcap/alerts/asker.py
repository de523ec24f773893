"""Asking question rules in the same model pass as the caption.

Each (question rule, camera) gets its own scheduler stream. When a camera's frame goes to the
model, the same decoded image is put in the slot of every question stream of that camera, at the
same moment. The scheduler batches waiting frames across streams (engine/scheduler.py, with its
batching window), so with a backend that batches (transformers: up to 8 items) the caption and
the questions run as ONE `generate` call on the same image: the model pays for a bigger batch,
not for another pass. A backend that takes one item at a time (max_batch 1) serves the streams
round robin, so the caption and the questions alternate. Either way each stream keeps only its
newest frame (latest frame wins): questions never queue up behind a busy model.

Measured costs are in docs/alerts.md (`python -m camcap.alerts.cost`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from camcap.alerts.engine import AlertEngine
from camcap.engine.events import Frame, FrameCaption, FrameError, FrameUnchanged, StreamEvent
from camcap.engine.scheduler import Scheduler, Stream
from camcap.models.base import Task, TaskKind

logger = logging.getLogger(__name__)


class QuestionAsker:
    """Feeds a camera's frames to its question rules' streams and their answers to the engine.

    Call on the event loop that reads the scheduler's events (streams are opened there).
    """

    def __init__(self, engine: AlertEngine, scheduler: Scheduler) -> None:
        self.engine = engine
        self.scheduler = scheduler
        # (rule name, camera) -> (its question, its stream)
        self._streams: dict[tuple[str, str], tuple[str, Stream]] = {}
        self._warned = False

    def submitted(self, camera: str, frame: Frame) -> None:
        """`camera` just gave `frame` to the model: ask its question rules about the same image."""
        self.engine.frame(camera, frame.image)
        rules = self.engine.questions(camera)
        wanted = {(rule.name, camera): rule.question or "" for rule in rules}
        for key in [key for key in self._streams if key[1] == camera and key not in wanted]:
            self._close(key)  # removed, disabled, or no longer watching this camera
        if not wanted:
            return
        if TaskKind.QUERY not in self.scheduler.info.tasks:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "The model %s cannot answer questions (it supports: %s), so question rules never trigger; "
                    "use match rules on its captions instead.",
                    self.scheduler.info.name,
                    ", ".join(kind.value for kind in self.scheduler.info.tasks),
                )
            return
        for key, question in wanted.items():
            entry = self._streams.get(key)
            if entry is not None and entry[0] != question:
                self._close(key)  # the rule was replaced with another question
                entry = None
            if entry is None:
                entry = (question, self._open(*key))
                self._streams[key] = entry
            stream = entry[1]
            if stream.closed:
                continue
            try:
                stream.submit(
                    Frame(
                        seq=frame.seq,
                        image=frame.image,
                        task=Task.query(question),
                        received_at=frame.received_at,
                        signature=frame.signature,
                    )
                )
            except RuntimeError:  # the scheduler is closing
                return

    def close_camera(self, camera: str) -> None:
        """The camera's stream ended: close its question streams."""
        for key in [key for key in self._streams if key[1] == camera]:
            self._close(key)

    def close(self) -> None:
        for key in list(self._streams):
            self._close(key)

    def _open(self, rule: str, camera: str) -> Stream:
        # The scheduler's own policies, change gating included (an unchanged frame repeats the
        # last answer, see AlertEngine.repeat_answer), but never a stale cut: a question is short.
        options = self.scheduler.stream_options
        if options.cut_stale:
            options = replace(options, cut_stale=False)
        return self.scheduler.open_stream(sink=lambda event: self._answered(rule, camera, event), options=options)

    def _answered(self, rule: str, camera: str, event: StreamEvent) -> None:
        if isinstance(event, FrameCaption):
            self.engine.answer(rule, camera, event.caption.text)
        elif isinstance(event, FrameUnchanged):
            self.engine.repeat_answer(rule, camera)
        elif isinstance(event, FrameError):
            logger.debug("Rule %s on %s: no answer for frame %s: %s", rule, camera, event.seq, event.message)

    def _close(self, key: tuple[str, str]) -> None:
        entry = self._streams.pop(key, None)
        if entry is not None:
            entry[1].close()
