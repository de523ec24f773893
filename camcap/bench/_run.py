"""`run_bench`'s body: load the model once, run the chosen scenarios in order, gather the report."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict

from camcap.bench._context import BenchContext
from camcap.bench.options import BenchOptions
from camcap.bench.report import (
    BenchReport,
    ScenarioResult,
    Table,
    command_line,
    machine_info,
    now_iso,
    versions,
)
from camcap.models.registry import create_captioner

logger = logging.getLogger(__name__)


def run(options: BenchOptions, *, progress: Callable[[str], None] | None = None) -> BenchReport:
    """`camcap.bench.run_bench`: load the model, warm it up, run each scenario module in turn."""
    say = progress or (lambda line: None)
    started = time.perf_counter()
    settings = options.model_settings
    say(f"loading {settings.model}...")
    with create_captioner(settings.model, settings.model_options()) as captioner:
        info = captioner.info
        context = BenchContext(options, settings, captioner, progress=say)
        report = BenchReport(
            command=command_line(),
            date=now_iso(),
            machine=machine_info(),
            versions=versions(),
            model={
                "name": info.name,
                "device": info.device,
                "dtype": info.dtype,
                "input_size": info.input_size,
                "max_batch": info.max_batch,
                "random_weights": info.random_weights,
                "new_tokens": options.new_tokens,
                "compile": settings.compile,
            },
            options={name: value for name, value in asdict(options).items() if name != "settings"},
        )
        say(f"{info.name} on {info.device} ({info.dtype}); warming up...")
        context.warm_up()
        for name in options.scenarios:
            say(f"scenario {name}...")
            begin = time.perf_counter()
            module = importlib.import_module(f"camcap.bench.{name}")
            try:
                result: ScenarioResult = module.run(context)
            except Exception as exc:
                # A run takes minutes: one failed scenario must not throw away the others' numbers.
                logger.exception("Scenario %s failed", name)
                result = ScenarioResult(name, name, Table([]), {}, error=f"{type(exc).__name__}: {exc}")
            result.seconds = round(time.perf_counter() - begin, 1)
            report.scenarios[name] = result
    report.seconds = round(time.perf_counter() - started, 1)
    return report
