"""`camcap bench`: camcap's latency story, measured on this machine with numbers anyone can rerun.

Scenarios (each a module here, each runnable alone):

    overhead    model time alone vs the full path through the real server, interleaved
    transports  binary WebSocket vs multipart POST vs base64-in-JSON over WebSocket
    freshness   age of the frame behind each caption: live mode vs every-3-s vs a FIFO queue
    frame_size  caption latency vs the size of the frame sent (and SmolVLM's splitting)
    batch_scaling  the model alone on batches of 1, 2, 4, 8 frames: the most batching can give
    streams     1, 2, 4, 8 concurrent streams, with and without batching and its window
    gating      change gating's thresholds on a scene that alternates still and moving parts
    stale_cut   cutting a caption short for a newer frame, off vs on
    scale_out   32 cameras through openai: to 1, 2, 4 stand-in engine replicas behind a router

The server is the real one (`create_app` under uvicorn on 127.0.0.1, in this process), serving
the same loaded model the direct baseline calls. Frames are synthetic (made in code). Use
random-weight models of real size (`random:blip-base`, `random:smolvlm-256m`): their timings
are real, their words are not.

    from camcap.bench import BenchOptions, run_bench
    from camcap.config import Settings

    report = run_bench(BenchOptions.smoke(Settings(model="random:blip-tiny")))
    print(report.text())
"""

from __future__ import annotations

from collections.abc import Callable

from camcap.bench.options import SCENARIOS, BenchOptions
from camcap.bench.report import BenchReport, Goal, ScenarioResult, Table

__all__ = ["SCENARIOS", "BenchOptions", "BenchReport", "Goal", "ScenarioResult", "Table", "run_bench"]


def run_bench(options: BenchOptions, *, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run `options.scenarios` against `options.settings.model` and return every number.

    `progress` receives one line per step (the CLI prints them to stderr); a run of the real
    models takes minutes. The model is loaded once and closed at the end.
    """
    # Imported here: the server, uvicorn and the model stack load only when a bench runs, so
    # that `camcap --help` (which lists the scenarios) stays quick.
    from camcap.bench._run import run

    return run(options, progress=progress)
