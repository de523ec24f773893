"""What this machine offers camcap, and what is wrong with it: the report behind `camcap doctor`.

`collect_report()` gathers facts without ever failing (no GPU, no driver, no nvidia-smi, even no
torch are all facts, not crashes); `diagnose()` turns them into findings that say what is wrong
and the command that fixes it; `render_report()` prints them. Whether the model is on disk comes from
`camcap.models.store`, which `camcap models` shares.

The steps live in their own modules around the records they share (_report.py): facts about torch
and the driver (_facts.py) and the operating system (_platform.py); findings (_diagnosis.py, with
the operating system's in _platform_findings.py) and the one table of driver, CUDA and torch builds
they use (_torch_builds.py); rendering (_render.py). This package's public API is what it exports here.
"""

from __future__ import annotations

from camcap.doctor._diagnosis import diagnose
from camcap.doctor._facts import (
    collect_report,
    driver_facts,
    parse_driver_version,
    parse_smi_cuda_version,
    parse_smi_query,
    torch_facts,
)
from camcap.doctor._platform import parse_wsl_version, platform_facts
from camcap.doctor._render import render_report
from camcap.doctor._report import (
    DoctorReport,
    DriverFacts,
    Finding,
    Folder,
    GpuInfo,
    Level,
    PlatformFacts,
    SmiGpu,
    TorchFacts,
)
from camcap.doctor._torch_builds import CUDA_WHEELS, MIN_DRIVER_FOR_CUDA

__all__ = [
    "CUDA_WHEELS",
    "MIN_DRIVER_FOR_CUDA",
    "DoctorReport",
    "DriverFacts",
    "Finding",
    "Folder",
    "GpuInfo",
    "Level",
    "PlatformFacts",
    "SmiGpu",
    "TorchFacts",
    "collect_report",
    "diagnose",
    "driver_facts",
    "parse_driver_version",
    "parse_smi_cuda_version",
    "parse_smi_query",
    "parse_wsl_version",
    "platform_facts",
    "render_report",
    "torch_facts",
]
