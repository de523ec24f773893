"""Choose the device and dtype a model runs on, and say why.

The "why" matters: the most common support question for tools like this is "why is it on the
CPU?". `choose_device` returns the reason with the choice, and `camcap doctor` prints it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from camcap.errors import DeviceError

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda:0", "mps", "cpu"
    dtype: str  # one of DTYPES
    reason: str  # one sentence a user can read


def choose_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Resolve "auto" to the best device this machine has, and the dtype that suits it.

    CUDA -> bfloat16 where the GPU supports it, else float16; Apple MPS -> float16;
    CPU -> float32 (half precision on CPU is slower, not faster). Explicit choices are checked.
    """
    import torch

    if dtype != "auto" and dtype not in DTYPES:
        raise DeviceError(f"Unknown dtype {dtype!r}, expected one of: auto, {', '.join(DTYPES)}.")

    if device == "auto":
        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            chosen = f"cuda:{index}"
            reason = f"CUDA is available ({torch.cuda.get_device_name(index)})."
        elif _mps_available():
            chosen, reason = "mps", "Apple Metal (MPS) is available."
        else:
            chosen, reason = "cpu", "no CUDA or MPS device is available to this torch build" + _cpu_hint()
    else:
        chosen = _check_explicit_device(device)
        reason = f"requested with --device {device}."

    if dtype == "auto":
        dtype = _default_dtype(chosen)
    elif dtype in ("float16", "bfloat16") and chosen == "cpu":
        logger.warning("%s on the CPU is usually slower than float32; use --dtype float32 for speed.", dtype)
    return DeviceChoice(chosen, dtype, reason)


def _default_dtype(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "float32"


def _check_explicit_device(device: str) -> str:
    import torch

    if device == "cpu":
        return "cpu"
    if device == "mps":
        if not _mps_available():
            raise DeviceError("--device mps was requested, but this torch build has no MPS support. Use --device cpu.")
        return "mps"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {device} was requested, but torch sees no CUDA GPU"
                + _cpu_hint()
                + " Run `camcap doctor` for details, or use --device cpu."
            )
        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {device} was requested, but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return f"cuda:{index}"
    raise DeviceError(f"Unknown device {device!r}, expected one of: auto, cpu, cuda, cuda:N, mps.")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _cpu_hint() -> str:
    """Explain the classic trap: a CPU-only torch build on a machine that has an NVIDIA GPU."""
    import torch

    if torch.version.cuda is None and nvidia_gpu_present():
        return (
            "; an NVIDIA GPU is present but the installed torch "
            f"({torch.__version__}) is a CPU-only build. Install a CUDA build, e.g. "
            "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu126 "
            "(`camcap doctor` names the build that matches your driver)"
        )
    return "."


def nvidia_gpu_present() -> bool:
    """True if the machine has an NVIDIA driver loaded, whatever torch thinks."""
    import os
    import shutil

    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None
