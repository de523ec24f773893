"""`camcap bench`: turn the bench flags into `BenchOptions`, run the benchmark, print and save the report.

The flags are defined with the others in _parser.py; `_BENCH_SIZES` names those of them that pass
straight through to `BenchOptions` (argparse dest == field name), so the two lists change together.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from camcap.cli._settings import settings_from_args
from camcap.errors import CamcapError

_BENCH_SIZES = (
    "warmup", "pairs", "transport_reps", "seconds", "interval_s", "sizes", "size_reps", "details", "streams",
    "captions_per_stream", "batch_windows", "change_thresholds", "scale_cameras", "scale_replicas", "scale_captions",
)  # fmt: skip


def bench_command(args: argparse.Namespace) -> int:
    from camcap.bench import BenchOptions, run_bench
    from camcap.bench.options import MODEL_FREE_SCENARIOS, SMOKE_MODEL

    settings = settings_from_args(args)
    model_free = args.scenarios is not None and set(args.scenarios) <= set(MODEL_FREE_SCENARIOS)
    if (args.smoke or model_free) and args.model is None:
        settings = settings.model_copy(update={"model": SMOKE_MODEL})
    changes: dict[str, Any] = {name: getattr(args, name) for name in _BENCH_SIZES if getattr(args, name) is not None}
    if args.new_tokens is not None:
        changes["new_tokens"] = args.new_tokens
    if args.scenarios is not None:
        changes["scenarios"] = args.scenarios
    try:
        options = BenchOptions.smoke(settings, **changes) if args.smoke else BenchOptions(settings=settings, **changes)
    except ValueError as exc:
        raise CamcapError(str(exc)) from None
    if not args.verbose:
        # Every server configuration the bench starts would repeat the random-weights warning.
        logging.getLogger("camcap.server.host").setLevel(logging.ERROR)
    report = run_bench(options, progress=lambda line: print(f"camcap bench: {line}", file=sys.stderr))
    print(report.markdown() if args.markdown else report.text())
    if args.json:
        report.write_json(args.json)
        print(f"camcap bench: wrote {args.json}", file=sys.stderr)
    if report.failed:
        print(f"camcap bench: failed: {', '.join(report.failed)} (see the errors above)", file=sys.stderr)
        return 1
    return 0
