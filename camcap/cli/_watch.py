"""`camcap watch SOURCE...`: caption live sources headless, one JSON line (or cue) per caption.

Every source gets a reader thread and a stream of one scheduler (camcap.sources.live), so several
sources share one model fairly. Captions go to stdout or `-o FILE`, flushed one by one; source
events (`source_down`, `source_up`) go to stderr. Stops after `--duration` seconds or
`--max-captions` captions, when every source is a file that ended, or on Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

from camcap.alerts.asker import QuestionAsker
from camcap.alerts.build import engine_from_settings
from camcap.alerts.engine import Alert, AlertEngine
from camcap.cli._caption import _task
from camcap.cli._settings import model_options, settings_from_args
from camcap.config import Settings
from camcap.engine.events import FrameUnchanged, StreamEvent
from camcap.engine.scheduler import Scheduler
from camcap.engine.timing import monotonic
from camcap.errors import CamcapError
from camcap.models.base import Captioner, Task
from camcap.outputs.record import CaptionEvent, CueBuilder
from camcap.outputs.writers import SUFFIXES, CueWriter, cue_writer, write_live_record
from camcap.sources.live import LiveSource
from camcap.sources.reader import SourceChange, SourceState, reader_options_of
from camcap.sources.spec import SourceSpec, parse_sources

logger = logging.getLogger("camcap.cli")


def watch_command(args: argparse.Namespace) -> int:
    from camcap import create_captioner

    settings = settings_from_args(args)
    task = _task(args)
    specs = parse_sources(args.sources, realtime=args.realtime, loop=args.loop)
    fmt = _format(args)
    if args.duration is not None and args.duration <= 0:
        raise CamcapError(f"--duration must be a positive number of seconds, got {args.duration}.")
    if args.max_captions is not None and args.max_captions < 1:
        raise CamcapError(f"--max-captions must be at least 1, got {args.max_captions}.")
    alerts = engine_from_settings(settings)  # a bad rule fails here, before the model loads
    out = _open_output(args.output)
    writer: CueWriter | None = None if fmt == "jsonl" else cue_writer(fmt, out, name_sources=len(specs) > 1)  # type: ignore[arg-type]
    watcher: _Watcher | None = None
    try:
        if writer is not None:
            writer.begin()  # a subtitle file is valid from the start, even if stopped before a caption
        with create_captioner(settings.model, model_options(settings)) as captioner:
            captioner.info.check_task(task)
            if captioner.info.random_weights:
                note = f"camcap: {captioner.info.name} has random weights: captions are meaningless words."
                print(note, file=sys.stderr)
            watcher = _Watcher(captioner, settings, task, specs, out, writer, args.duration, args.max_captions, alerts)
            asyncio.run(watcher.run())
    except KeyboardInterrupt:  # Ctrl+C while the model loads, or a second one while stopping
        _say_kept(watcher.captions if watcher is not None else 0, writer, args.output)
        raise
    finally:
        alerts.close()
        if out is not sys.stdout:
            out.close()
    if watcher is not None and watcher.interrupted:
        _say_kept(watcher.captions, writer, args.output)
        raise KeyboardInterrupt  # the CLI says "interrupted" and exits 130, as `camcap caption` does
    return 0


def _say_kept(captions: int, writer: CueWriter | None, output: str | None) -> None:
    cues = f" as {writer.count} cue(s)" if writer is not None else ""
    where = f" in {output}" if output is not None else ""
    print(f"camcap: interrupted: kept {captions} caption(s){cues}{where}.", file=sys.stderr, flush=True)


class _Watcher:
    def __init__(
        self,
        captioner: Captioner,
        settings: Settings,
        task: Task,
        specs: list[SourceSpec],
        out: TextIO,
        writer: CueWriter | None,
        duration: float | None,
        max_captions: int | None,
        alerts: AlertEngine | None = None,
    ) -> None:
        self.captioner, self.settings, self.task, self.specs = captioner, settings, task, specs
        self.alerts = alerts or AlertEngine()
        self.out, self.duration, self.max_captions = out, duration, max_captions
        self.writer = writer  # None: JSON Lines
        self.builders = {spec.name: CueBuilder() for spec in specs}
        self.captions = 0
        self.started = monotonic()
        self.enough = asyncio.Event()
        self.interrupted = False  # Ctrl+C: stopped cleanly, cues written; the CLI exits 130

    async def run(self) -> None:
        scheduler = Scheduler(
            self.captioner,
            max_batch=self.settings.max_batch,
            batch_window_ms=self.settings.batch_window_ms,
            stream_options=self.settings.stream_options(),
        )
        scheduler.start()
        self.started = monotonic()
        asker = QuestionAsker(self.alerts, scheduler)
        stop_listening = self.alerts.listen(self._alert)
        sources = [
            LiveSource(
                spec,
                scheduler,
                self.task,
                on_caption=self._caption,
                on_change=_report,
                on_event=lambda event, name=spec.name: self._unchanged(name, event),  # type: ignore[misc]
                on_submit=lambda frame, name=spec.name: asker.submitted(name, frame),  # type: ignore[misc]
                started_at=self.started,
                reader_options=reader_options_of(self.settings),
            )
            for spec in self.specs
        ]
        runs = [asyncio.create_task(source.run()) for source in sources]
        all_ended = asyncio.gather(*runs)
        enough = asyncio.create_task(self.enough.wait())
        try:
            await asyncio.wait([all_ended, enough], timeout=self.duration, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Ctrl+C: asyncio.run cancels this task. Stop the sources, close the open cue and
            # return normally, so the output is complete; watch_command then exits 130.
            self.interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            for source in sources:
                source.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(all_ended)
            enough.cancel()
            stop_listening()
            asker.close()
            self._finish()  # before the scheduler's close, which may wait for a generation to notice
            scheduler.close()

    def _caption(self, event: CaptionEvent) -> None:
        if self.max_captions is not None and self.captions >= self.max_captions:
            return
        self.captions += 1
        # With -v each caption shows on stderr too, while the output goes to its file.
        logger.info("Caption %d from %s: %s", self.captions, event.source, event.text)
        if self.writer is None:
            write_live_record(self.out, event)
        else:
            cue = self.builders[event.source or ""].add(event)
            if cue is not None:
                self.writer.write(cue)
        if self.max_captions is not None and self.captions >= self.max_captions:
            self.enough.set()
        # After the caption's own line, so an alert line follows the caption that caused it.
        self.alerts.caption(event.source or "", event.text)

    def _unchanged(self, source: str, event: StreamEvent) -> None:
        if isinstance(event, FrameUnchanged):
            self.alerts.unchanged(source)  # the last caption stands: it counts again for match rules

    def _alert(self, alert: Alert) -> None:
        """An alert line: in the JSON Lines output beside the captions, else on stderr."""
        record: dict[str, object] = {"at": alert.fields()["at"], "source": alert.camera, "alert": alert.rule}
        record.update({key: value for key, value in alert.fields().items() if key not in ("rule", "camera", "at")})
        if self.writer is None:
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()
        else:
            print(f"camcap: {json.dumps({'type': 'alert', **record}, ensure_ascii=False)}", file=sys.stderr, flush=True)

    def _finish(self) -> None:
        if self.writer is None:
            return
        end = monotonic() - self.started
        for builder in self.builders.values():
            cue = builder.finish(end)
            if cue is not None:
                self.writer.write(cue)


def _report(change: SourceChange) -> None:
    """Source events on stderr, one JSON object a line (stdout holds only captions)."""
    record: dict[str, object] = {"type": change.type, "source": change.source}
    if change.state is not SourceState.UP:
        record.update(reason=change.reason, error=change.error, retry_in_s=change.retry_in_s)
        if change.state is SourceState.ENDED:
            record["type"] = "source_ended"
    print(f"camcap: {json.dumps(record, ensure_ascii=False)}", file=sys.stderr, flush=True)


def _format(args: argparse.Namespace) -> str:
    if args.format is not None:
        return str(args.format)
    if args.output is not None:
        suffix = Path(args.output).suffix.lower()
        for fmt, known in SUFFIXES.items():
            if suffix == known and fmt in ("vtt", "srt", "jsonl"):
                return fmt
    return "jsonl"


def _open_output(output: str | None) -> TextIO:
    if output is None:
        return sys.stdout
    path = Path(output)
    if path.is_dir():
        raise CamcapError(f"-o {output} is a folder; name a file.")
    if not path.parent.is_dir():
        raise CamcapError(f"-o {output}: the folder {path.parent} does not exist; create it first.")
    try:
        # Written as captions come (flushed each), so it can be followed with `tail -f`.
        return path.open("w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise CamcapError(f"-o {output}: cannot be written ({exc.strerror}).") from None
