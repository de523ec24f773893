"""Which torch build an NVIDIA driver can run, and the command that installs it: the doctor's one table.

Every number here comes from a published source, named beside it; when PyTorch or NVIDIA move on,
this module is the only place to update (tests/test_doctor.py pins the behaviour it implies).
"""

from __future__ import annotations

from dataclasses import dataclass

from camcap.doctor._report import PlatformFacts

# The oldest NVIDIA driver branch that runs each CUDA major release, through minor version
# compatibility: NVIDIA, "CUDA Compatibility", Minor Version Compatibility, table 1
# (13.x >= 580, 12.x >= 525 and < 580, 11.x >= 450). PyTorch's wheels bundle their own CUDA runtime
# and rely on exactly this rule, so the driver's branch, not an installed CUDA toolkit, decides.
MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}


@dataclass(frozen=True)
class CudaWheels:
    """One of PyTorch's CUDA wheel indexes: https://download.pytorch.org/whl/<index>."""

    index: str  # "cu130"
    cuda: str  # "13.0"
    windows: bool  # built for Windows too (PyTorch leaves some CUDA versions out of its Windows build)


# PyTorch's CUDA builds of torch 2.13, newest first: pytorch/pytorch at v2.13.0,
# .github/scripts/generate_binary_build_matrix.py, CUDA_ARCHES = ["12.6", "12.9", "13.0", "13.2"]
# with 12.9 left out of the Windows build, and CUDA_STABLE = "13.0", the build that a plain
# `pip install torch` gets from PyPI on Linux (on Windows PyPI only has the CPU-only build).
CUDA_WHEELS = (
    CudaWheels("cu132", "13.2", windows=True),
    CudaWheels("cu130", "13.0", windows=True),
    CudaWheels("cu129", "12.9", windows=False),
    CudaWheels("cu126", "12.6", windows=True),
)
# What camcap recommends in each driver family: 13.0 (PyPI's own Linux build) for drivers from 580;
# 12.6 for drivers 525-579, the 12.x build with kernels for the most GPUs (Maxwell to Hopper) and a
# Windows build. Blackwell GPUs (compute capability 10.0 and up) need a build from CUDA 12.8 on:
# 12.9 on Linux; on Windows a 580 driver and 13.0.
RECOMMENDED = {13: "cu130", 12: "cu126"}
BLACKWELL_12X = "cu129"
# PyTorch's ROCm build of torch 2.13 (Linux only): https://download.pytorch.org/whl/rocm7.2.
ROCM_INDEX = "rocm7.2"

PYTORCH_SELECTOR = "https://pytorch.org/get-started/locally/"
_NVIDIA_DRIVERS = "https://www.nvidia.com/Download/index.aspx"


def index_url(index: str) -> str:
    return f"https://download.pytorch.org/whl/{index}"


def pip_install_torch(index: str) -> str:
    """Replace the installed torch by the build on one of PyTorch's indexes. --force-reinstall because
    pip otherwise keeps "2.13.0+cpu" as already satisfying "torch"."""
    return f"python -m pip install --force-reinstall torch --index-url {index_url(index)}"


def cuda_major(version: str | None) -> int | None:
    """The leading number of a version: "12.4" -> 12, "550.54.14" -> 550."""
    if not version:
        return None
    head = version.split(".", 1)[0].strip()
    return int(head) if head.isdigit() else None


def driver_runs_cuda(driver_version: str | None, cuda_version: str | None) -> bool | None:
    """Whether a driver runs a CUDA release at all (minor version compatibility); None if unknown."""
    driver, cuda = cuda_major(driver_version), cuda_major(cuda_version)
    if driver is None or cuda is None or cuda not in MIN_DRIVER_FOR_CUDA:
        return None
    return driver >= MIN_DRIVER_FOR_CUDA[cuda]


def newest_cuda_family(driver_version: str | None) -> int | None:
    """The newest CUDA major release a driver runs (13 for 580+, 12 for 525-579, ...)."""
    driver = cuda_major(driver_version)
    if driver is None:
        return None
    families = [major for major, needed in MIN_DRIVER_FOR_CUDA.items() if driver >= needed]
    return max(families) if families else None


def cuda_torch_fix(driver_version: str | None, os: PlatformFacts, compute_capabilities: tuple[str, ...] = ()) -> str:
    """The command that installs a CUDA build of torch this driver runs, or the driver update it needs first.

    With the driver unknown, 12.6 is the safer bet: it runs on every driver from 525.
    """
    family = newest_cuda_family(driver_version) if driver_version else 12
    blackwell = any((cuda_major(cc) or 0) >= 10 for cc in compute_capabilities)
    if family is None or family < 12 or (family == 12 and blackwell and os.system == "Windows"):
        why = (
            "this GPU needs CUDA 12.8 or newer, which torch builds for Windows only with CUDA 13"
            if family == 12
            else f"{driver_version} is older than any current torch build supports"
        )
        return (
            f"Update the NVIDIA driver to {MIN_DRIVER_FOR_CUDA[13]} or newer ({why}): {driver_download(os)}. "
            f"Then: {pip_install_torch(RECOMMENDED[13])}"
        )
    if family == 12 and blackwell:
        return pip_install_torch(BLACKWELL_12X)
    return pip_install_torch(RECOMMENDED[family])


def driver_download(os: PlatformFacts) -> str:
    """Where this machine's NVIDIA driver comes from (for WSL: Windows, never a Linux driver)."""
    if os.wsl is not None:
        return (
            f"install it in Windows from {_NVIDIA_DRIVERS} (never inside WSL), then run `wsl --shutdown` in PowerShell"
        )
    if os.system == "Linux":
        return f"on Ubuntu `sudo ubuntu-drivers install`, elsewhere {_NVIDIA_DRIVERS}; then reboot"
    return f"install it from {_NVIDIA_DRIVERS}, then reboot"
