"""What a question rule costs: `python -m camcap.alerts.cost [--model SPEC] [--questions N]`.

Times one model pass per frame three ways, on a drawn scene (camcap.models.demo.scenes): the
caption alone; the caption with N questions in the same batch (what camcap does when the backend
batches, alerts/asker.py); and the caption then each question as separate passes (what a backend
that takes one item at a time does: the scheduler alternates). Prints the median of `--repeat`
runs after a warm-up. Numbers for docs/alerts.md; no test asserts them (the machine is noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from camcap.models.base import Captioner, Request, Task
from camcap.models.demo.scenes import SceneSpec, ShapeSpec, draw_scene

QUESTION = "is there a red circle?"


def median_ms(captioner: Captioner, batches: Sequence[Sequence[Request]], repeat: int) -> float:
    """Median wall time of running `batches` one after another (each a `generate` call)."""
    times = []
    for _ in range(repeat + 1):  # the first run warms up (allocations, caches) and is dropped
        started = time.perf_counter()
        for batch in batches:
            for _event in captioner.generate(list(batch)):
                pass
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:])


def measure(captioner: Captioner, questions: int, repeat: int) -> dict[str, float]:
    image, _ = draw_scene(SceneSpec((ShapeSpec("red", "circle", "left"),)), (160, 120))
    caption: Request = (image, Task.caption())
    asked: list[Request] = [(image, Task.query(QUESTION))] * questions
    return {
        "caption alone": median_ms(captioner, [[caption]], repeat),
        f"caption + {questions} question(s), one batch": median_ms(captioner, [[caption, *asked]], repeat),
        f"caption, then {questions} question(s), one by one": median_ms(
            captioner, [[caption]] + [[item] for item in asked], repeat
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from camcap import create_captioner
    from camcap.models.options import ModelOptions

    parser = argparse.ArgumentParser(prog="python -m camcap.alerts.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo:shapes")
    parser.add_argument("--questions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tokens", type=int, help="fix the answer length (min = max new tokens), e.g. for random:")
    args = parser.parse_args(argv)
    options = ModelOptions(
        device="cpu", allow_download=False, max_new_tokens=args.tokens or 40, min_new_tokens=args.tokens
    )
    with create_captioner(args.model, options) as captioner:
        results = measure(captioner, args.questions, args.repeat)
    base = next(iter(results.values()))
    print(f"{args.model}, CPU, median of {args.repeat}:")
    for name, ms in results.items():
        print(f"  {name:<42} {ms:8.1f} ms  ({ms / base:4.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
