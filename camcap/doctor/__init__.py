"""What this machine offers camcap, and what is wrong with it: the report behind `camcap doctor`.

`collect_report()` gathers facts without ever failing (no GPU, no driver, no nvidia-smi, even no
torch are all facts, not crashes); `diagnose()` turns them into findings that say what is wrong
and the command that fixes it; `render_report()` prints them. Whether the model is on disk comes from
`camcap.models.store`, which `camcap models` shares.

The three steps live in their own modules (_facts.py, _diagnosis.py, _render.py) around the
records they share (_report.py); this package's public API is what it exports here.
"""

from __future__ import annotations

from camcap.doctor._diagnosis import MIN_DRIVER_FOR_CUDA, diagnose
from camcap.doctor._facts import collect_report, driver_facts, parse_driver_version, torch_facts
from camcap.doctor._render import render_report
from camcap.doctor._report import DoctorReport, DriverFacts, Finding, Folder, GpuInfo, Level, TorchFacts

__all__ = [
    "MIN_DRIVER_FOR_CUDA",
    "DoctorReport",
    "DriverFacts",
    "Finding",
    "Folder",
    "GpuInfo",
    "Level",
    "TorchFacts",
    "collect_report",
    "diagnose",
    "driver_facts",
    "parse_driver_version",
    "render_report",
    "torch_facts",
]
