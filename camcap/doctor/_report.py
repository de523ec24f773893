"""The records of a `camcap doctor` report: the facts gathered, the findings, and the report itself.

Plain frozen dataclasses, so that `diagnose()` and `render_report()` can be fed made-up facts in
tests, and `DoctorReport.to_dict()` is the `camcap doctor --json` output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from camcap.models.store import ModelStatus

Level = Literal["ok", "note", "warning", "problem"]


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str  # what is wrong and what to do, in one paragraph


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_gb: float
    compute_capability: str  # "8.6"
    supported: bool  # torch ships kernels for it (else: "no kernel image is available")


@dataclass(frozen=True)
class TorchFacts:
    version: str | None = None
    error: str | None = None  # why `import torch` failed; everything else is then empty
    cuda: str | None = None  # torch.version.cuda: None for CPU-only and ROCm builds
    hip: str | None = None  # torch.version.hip: set for ROCm builds
    cudnn: str | None = None
    cuda_available: bool = False
    arch_list: tuple[str, ...] = ()  # GPU architectures compiled in, e.g. ("sm_80", "sm_90")
    gpus: tuple[GpuInfo, ...] = ()
    mps: bool = False


@dataclass(frozen=True)
class DriverFacts:
    version: str | None = None  # NVIDIA driver version, e.g. "550.54.14"
    gpus: tuple[str, ...] = ()  # what nvidia-smi lists, e.g. "NVIDIA L4, 23034 MiB"
    smi_error: str | None = None  # nvidia-smi exists but failed (driver not loaded, ...)


@dataclass(frozen=True)
class Folder:
    name: str
    path: str
    free_gb: float | None  # free space on its disk (or its nearest existing parent's)


@dataclass(frozen=True)
class DoctorReport:
    python: str
    platform: str
    versions: dict[str, str | None]
    torch: TorchFacts
    driver: DriverFacts
    nvidia_gpu_present: bool
    cuda_visible_devices: str | None
    device: str | None  # what camcap would pick for the configured --device / --dtype
    dtype: str | None
    device_reason: str
    hf_hub_offline: bool
    folders: tuple[Folder, ...]
    model_spec: str
    model: ModelStatus | None  # None: the spec itself is invalid (see findings)
    model_error: str | None = None
    findings: tuple[Finding, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
