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
    message: str  # what is wrong and why, in one paragraph
    fix: str | None = None  # the exact command (or step) that fixes it; None when there is nothing to do
    code: str = ""  # a stable name for scripts and the README's Troubleshooting section, e.g. "cpu-only-torch"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_gb: float
    compute_capability: str  # "8.6"
    supported: bool  # torch ships kernels for it (else: "no kernel image is available")


@dataclass(frozen=True)
class TorchFacts:
    version: str | None = None  # torch.__version__, e.g. "2.5.1+cu124", "2.13.0+cpu", "2.13.0+rocm7.2"
    error: str | None = None  # why `import torch` failed; everything else is then empty
    cuda: str | None = None  # torch.version.cuda: None for CPU-only and ROCm builds
    hip: str | None = None  # torch.version.hip: set for ROCm builds
    cudnn: str | None = None
    cuda_available: bool = False
    arch_list: tuple[str, ...] = ()  # GPU architectures compiled in, e.g. ("sm_80", "sm_90")
    gpus: tuple[GpuInfo, ...] = ()
    mps: bool = False  # torch.backends.mps.is_available()
    mps_built: bool = False  # torch.backends.mps.is_built(): the build has MPS, whatever this Mac offers

    @property
    def build(self) -> str | None:
        """The build as PyTorch's wheel indexes name it: "cu124", "rocm7.2", "cpu" (None without torch)."""
        if self.version is None:
            return None
        label = self.version.partition("+")[2]
        if label:
            return label
        if self.cuda:
            return "cu" + self.cuda.replace(".", "")
        if self.hip:
            return "rocm" + ".".join(self.hip.split(".")[:2])
        return "cpu"  # PyPI's macOS and Windows builds carry no label


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as `nvidia-smi` lists it (numbers are None where the driver reports "[N/A]")."""

    index: int
    name: str
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_pct: int | None = None
    compute_mode: str | None = None  # "Default", "Exclusive_Process", "Prohibited"
    compute_capability: str | None = None  # "8.9"; only newer drivers report it

    @property
    def label(self) -> str:
        memory = f", {self.memory_total_mib} MiB" if self.memory_total_mib is not None else ""
        return f"{self.name}{memory}"


@dataclass(frozen=True)
class DriverFacts:
    version: str | None = None  # NVIDIA driver version, e.g. "550.54.14" (Windows numbering on Windows and WSL)
    cuda_version: str | None = None  # the newest CUDA the driver runs, from nvidia-smi's header, e.g. "12.4"
    gpus: tuple[SmiGpu, ...] = ()  # what nvidia-smi lists
    smi_path: str | None = None  # which nvidia-smi answered
    smi_error: str | None = None  # nvidia-smi exists but failed (driver not loaded, ...)


@dataclass(frozen=True)
class PlatformFacts:
    """The operating system around torch: where GPU access usually breaks before torch is involved."""

    system: str = "Linux"  # platform.system(): "Linux", "Windows", "Darwin"
    machine: str = "x86_64"  # platform.machine(): "x86_64", "AMD64", "arm64", "aarch64"
    release: str = ""  # platform.release(); the kernel version on Linux
    # Linux
    wsl: int | None = None  # 1 or 2 inside Windows Subsystem for Linux, read from /proc/version
    wsl_distro: str | None = None  # WSL_DISTRO_NAME, for `wsl --set-version <distro> 2`
    wsl_libcuda: bool = False  # /usr/lib/wsl/lib/libcuda.so: WSL 2's bridge to the Windows driver
    linux_libcuda: tuple[str, ...] = ()  # WSL only: libcuda.so files of a Linux driver installed inside WSL
    linux_driver_packages: tuple[str, ...] = ()  # the Debian packages that installed them
    container: str | None = None  # "docker", "podman" or "container" when running inside one
    dev_nvidia: tuple[str, ...] = ()  # /dev/nvidia0, /dev/nvidiactl, ...: present when the GPU is reachable
    pci_gpus: tuple[str, ...] = ()  # display devices on the PCI bus by vendor: "nvidia", "amd", "intel"
    kfd: str | None = None  # AMD's /dev/kfd: "ok", "no access", or None when absent
    # Windows
    video_controllers: tuple[str, ...] = ()  # names Windows gives its display adapters
    # macOS
    mac_version: str | None = None  # "14.5"
    apple_silicon: bool = False  # sysctl hw.optional.arm64 = 1, also when Python runs under Rosetta
    rosetta: bool = False  # sysctl sysctl.proc_translated = 1: an x86_64 Python translated on Apple silicon


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
    os: PlatformFacts = field(default_factory=PlatformFacts)
    findings: tuple[Finding, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The `camcap doctor --json` document: every fact, the findings, and a summary for scripts."""
        data = dataclasses.asdict(self)
        data["summary"] = {
            "system": self.os.system,
            "wsl": self.os.wsl,
            "torch_build": self.torch.build,
            "device": self.device,
            "problems": sum(1 for finding in self.findings if finding.level == "problem"),
        }
        return data
