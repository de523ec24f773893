"""Measure `demo:shapes` on fresh scenes it never saw, through camcap's own model path.

    python -m camcap.models.demo.evaluate [--model demo:shapes] [--scenes 400] [--out report.json]

The model is loaded with `create_captioner` (the production loading path) and asked with camcap
`Task`s, so what is measured is what `camcap serve --model demo:shapes` answers. Two views of
each scene: `drawn` (the frame as drawn at the model's input size, camera nuisance included) and
`camcap` (drawn at 640x480, shrunk to the input size and JPEG-encoded at the page's quality, as
the page and server do). A caption is right when it names the colour, shape and side of every
object and nothing else (`scenes.parse_caption`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from camcap.models.base import Caption, Captioner, Task
from camcap.models.demo import data, language
from camcap.models.demo.scenes import SIDES, Truth, draw_scene, parse_caption, random_scene

EVAL_SEED = 20261127  # not the training seed: these scenes were never trained on
QUERY_TASKS = ("yesno", "colour", "count", "position")


@dataclass(frozen=True)
class Scene:
    drawn: Image.Image  # at the model's input size
    camcap: Image.Image  # through camcap's path from a 640x480 frame
    truth: Truth


def fresh_scenes(count: int, input_size: int, *, seed: int = EVAL_SEED, objects: int | None = None) -> list[Scene]:
    """`count` scenes, half with one object and half with two unless `objects` fixes it."""
    rng = random.Random(seed)
    scenes = []
    for index in range(count):
        spec = random_scene(rng, objects=objects or 1 + index % 2)
        small = (round(input_size * 4 / 3), input_size)
        drawn, truth = draw_scene(spec, small)
        large, _ = draw_scene(spec, (640, 480))
        scenes.append(Scene(drawn, data.camcap_frame(large, input_size), truth))
    return scenes


def caption_correct(text: str, truth: Truth, length: str = "normal") -> bool:
    """Does the caption name exactly the scene's objects (colour, shape and, except short, side)?"""
    said = parse_caption(text)
    if length == "short":
        return {(c, s) for c, s, _ in said} == {(c, s) for c, s, _ in truth.triples()} and len(said) == len(
            truth.objects
        )
    return said == truth.triples()


def evaluate(
    captioner: Captioner,
    scenes: Sequence[Scene],
    *,
    seed: int = EVAL_SEED,
    lengths: Sequence[str] = ("short", "normal", "long"),
    queries: Sequence[str] = QUERY_TASKS,
    views: Sequence[str] = ("drawn", "camcap"),
) -> dict[str, Any]:
    """Accuracy per view and per task; counts are kept so a reader can judge the precision."""
    rng = random.Random(seed + 1)
    questions = [[language.example(s.truth, task, rng) for task in queries] for s in scenes]
    report: dict[str, Any] = {"scenes": len(scenes)}
    for view in views:
        results: dict[str, list[bool]] = {}
        requests: list[tuple[Image.Image, Task]] = []
        checks: list[tuple[str, Any]] = []
        for scene, asked in zip(scenes, questions, strict=True):
            image = getattr(scene, view)
            objects = "one_object" if len(scene.truth.objects) == 1 else "two_objects"
            for length in lengths:
                requests.append((image, Task.caption(length)))  # type: ignore[arg-type]
                checks.append((f"caption_{length}_{objects}", (scene.truth, length)))
            for example in asked:
                requests.append((image, Task.query(example.prompt)))
                checks.append((f"query_{example.task}", example.answer))
        for (name, expected), text in zip(checks, _answers(captioner, requests), strict=True):
            if name.startswith("caption_"):
                truth, length = expected
                ok = caption_correct(text, truth, length)
                if length != "short":  # colours and sides alone: what a mirror or a channel swap breaks
                    said = {(c, side) for c, _, side in parse_caption(text)}
                    results.setdefault(f"{name}_colour_side", []).append(
                        said == {(o.colour, o.side) for o in truth.objects}
                    )
            else:
                ok = text.strip() == expected
            results.setdefault(name, []).append(ok)
        report[view] = {name: _share(values) for name, values in sorted(results.items())}
    return report


def _answers(captioner: Captioner, requests: list[tuple[Image.Image, Task]]) -> Iterator[str]:
    batch = max(1, captioner.info.max_batch)
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        texts: dict[int, str] = {}
        for event in captioner.generate(chunk):
            if isinstance(event, Caption):
                texts[event.index] = event.text
        yield from (texts[i] for i in range(len(chunk)))


def _share(values: list[bool]) -> dict[str, float | int]:
    return {"accuracy": round(sum(values) / len(values), 4), "right": sum(values), "of": len(values)}


def summary(report: dict[str, Any]) -> str:
    """The numbers docs/demo-model.md quotes, as a small Markdown table."""
    lines = ["| measure | drawn | camcap path |", "|---|---|---|"]
    for name in report["drawn"]:
        cells = [
            f"{report[view][name]['accuracy'] * 100:.1f} % ({report[view][name]['right']}/{report[view][name]['of']})"
            for view in ("drawn", "camcap")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from camcap.models.options import ModelOptions
    from camcap.models.registry import create_captioner

    parser = argparse.ArgumentParser(prog="python -m camcap.models.demo.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo:shapes", help="spec: demo:shapes, or hf:<folder> of a new checkpoint")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    options = ModelOptions(device="cpu", dtype="float32", allow_download=False, max_batch=16)
    with create_captioner(args.model, options) as captioner:
        scenes = fresh_scenes(args.scenes, captioner.info.input_size, seed=args.seed)
        report = {
            "model": args.model,
            "seed": args.seed,
            "sides": list(SIDES),
            **evaluate(captioner, scenes, seed=args.seed),
        }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
