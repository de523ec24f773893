"""`camcap caption`: caption image files, and print the captions as text, streamed words or JSON Lines.

Video files (recognised by probing, not by name) go to `camcap.cli._video`: timed cues as
WebVTT, SRT, JSON Lines or text.

Every file is checked before the model loads, so a typo fails in milliseconds; images are then
captioned in batches as large as the model allows (one at a time when words stream as text).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from camcap.cli._settings import model_options, settings_from_args
from camcap.config import Settings
from camcap.errors import CamcapError
from camcap.models.base import Caption, Captioner, Event, ModelInfo, Task, TaskKind, Token

# The package's name, not this module's: the -v log lines of `camcap caption` read "camcap.cli: ...".
logger = logging.getLogger("camcap.cli")


def caption_command(args: argparse.Namespace) -> int:
    from camcap import create_captioner
    from camcap.images import check_image_files
    from camcap.sources.probe import classify_file

    settings = settings_from_args(args)
    task = _task(args)
    kinds = {classify_file(path) for path in args.images}
    if "video" in kinds:
        return _caption_videos(args, settings, task, mixed=len(kinds) > 1)
    _video_flags_unused(args)
    # Check the files before loading the model: a typo should fail in milliseconds.
    check_image_files(args.images)
    out = _CaptionOutput(json_lines=args.json, stream=args.stream, name_files=len(args.images) > 1)
    with create_captioner(settings.model, model_options(settings)) as captioner:
        info = captioner.info
        info.check_task(task)
        if info.random_weights:
            print(f"camcap: {info.name} has random weights: captions are meaningless words.", file=sys.stderr)
        # Plain-text streaming shows one image's words at a time; a batch would interleave them.
        size = 1 if args.stream and not args.json else max(1, info.max_batch)
        chunks = list(_chunks(args.images, size))
        if info.concurrency > 1 and not args.stream and len(chunks) > 1:
            # A remote server (openai:) batches for itself: keep --max-inflight requests going at
            # once; captions still print in the order of the files.
            with ThreadPoolExecutor(max_workers=info.concurrency, thread_name_prefix="camcap-caption") as pool:
                answers = pool.map(lambda files: list(_generate(captioner, files, task, info.input_size)), chunks)
                for files, events in zip(chunks, answers, strict=True):
                    for event in events:
                        out.show(event, files, info)
            return 0
        for files in chunks:
            for event in _generate(captioner, files, task, info.input_size):
                out.show(event, files, info)
    return 0


def _caption_videos(args: argparse.Namespace, settings: Settings, task: Task, *, mixed: bool) -> int:
    from camcap import create_captioner
    from camcap.cli._video import caption_videos, plan_videos

    if mixed:
        raise CamcapError("Give either images or videos to one `camcap caption`, not both; run it once for each.")
    if args.stream:
        raise CamcapError("--stream is for images; video captions are written as timed cues (see --format).")
    jobs, fmt, plan = plan_videos(args, settings)
    with create_captioner(settings.model, model_options(settings)) as captioner:
        captioner.info.check_task(task)
        if captioner.info.random_weights:
            print(f"camcap: {captioner.info.name} has random weights: captions are meaningless words.", file=sys.stderr)
        return caption_videos(captioner, task, jobs, fmt, plan)


def _video_flags_unused(args: argparse.Namespace) -> None:
    given = [flag for flag, value in (("--every", args.every), ("--on-change", args.on_change),
             ("--format", args.format), ("-o", args.output)) if value]  # fmt: skip
    if given:
        raise CamcapError(f"{', '.join(given)} only apply to videos; for images use --json and shell redirection.")


def _generate(captioner: Captioner, files: Sequence[str], task: Task, input_size: int) -> Iterator[Event]:
    from camcap.images import open_image

    requests = [(open_image(path, max_short_side=input_size), task) for path in files]
    return captioner.generate(requests)


def _task(args: argparse.Namespace) -> Task:
    if args.length is not None and (args.ask or args.detect or args.point):
        raise CamcapError("--length only applies to captions; leave it out with --ask, --detect or --point.")
    try:
        if args.ask is not None:
            return Task.query(args.ask)
        if args.detect is not None:
            return Task.detect(args.detect)
        if args.point is not None:
            return Task.point(args.point)
        return Task.caption(args.length or "normal")
    except ValueError as exc:
        raise CamcapError(str(exc)) from None


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _CaptionOutput:
    """Prints caption events as text, streamed text, or JSON Lines."""

    def __init__(self, *, json_lines: bool, stream: bool, name_files: bool) -> None:
        self.json_lines, self.stream, self.name_files = json_lines, stream, name_files
        self.streamed: set[int] = set()  # batch items whose words were already printed

    def show(self, event: Event, files: Sequence[str], info: ModelInfo) -> None:
        if isinstance(event, Token) and self.stream:
            if self.json_lines:
                self._json({"type": "token", "file": files[event.index], "text": event.text})
                return
            if event.index not in self.streamed and self.name_files:
                print(f"{files[event.index]}: ", end="")
            self.streamed.add(event.index)
            print(event.text, end="", flush=True)
        elif isinstance(event, Caption):
            path = files[event.index]
            if self.json_lines:
                self._json(_caption_record(path, event, info))
            else:
                prefix = f"{path}: " if self.name_files and event.index not in self.streamed else ""
                text = "" if event.index in self.streamed else event.text
                print(prefix + text + "".join(f"\n  {line}" for line in _places(event)), flush=True)
                self.streamed.discard(event.index)
            logger.info(
                "%s: %.0f ms (first token %.0f ms, %d tokens)",
                path, event.timings.total_ms, event.timings.first_token_ms, event.timings.tokens,
            )  # fmt: skip

    @staticmethod
    def _json(record: dict[str, Any]) -> None:
        print(json.dumps(record, ensure_ascii=False), flush=True)


def _caption_record(path: str, caption: Caption, info: ModelInfo) -> dict[str, Any]:
    task = caption.task
    record: dict[str, Any] = {
        "type": "caption",
        "file": path,
        "caption": caption.text,
        "task": task.kind.value,
        "model": info.name,
        "random_weights": info.random_weights,
        "timings": dataclasses.asdict(caption.timings),
        "boxes": [dataclasses.asdict(box) for box in caption.boxes],
        "points": [dataclasses.asdict(point) for point in caption.points],
    }
    if task.kind is TaskKind.CAPTION:
        record["length"] = task.length
    elif task.question is not None:
        record["question"] = task.question
    else:
        record["object"] = task.target
    return record


def _places(caption: Caption) -> list[str]:
    boxes = [f"box {b.x_min:.3f} {b.y_min:.3f} {b.x_max:.3f} {b.y_max:.3f}" for b in caption.boxes]
    return boxes + [f"point {p.x:.3f} {p.y:.3f}" for p in caption.points]
