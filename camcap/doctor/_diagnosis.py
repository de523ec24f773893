"""Turning a `camcap doctor` report's facts into findings: what is wrong, and the command that fixes it.

`diagnose()` is pure: it reads a `DoctorReport` and nothing else, so tests feed it made-up
machines (a CPU-only torch next to an NVIDIA GPU, a driver too old for torch's CUDA, WSL 1, ...).
Findings about the operating system come first (_platform_findings.py): they are usually the root
cause of what torch then reports.
"""

from __future__ import annotations

from camcap.doctor._platform_findings import platform_findings, unset_env
from camcap.doctor._report import DoctorReport, Finding, SmiGpu
from camcap.doctor._torch_builds import (
    MIN_DRIVER_FOR_CUDA,
    PYTORCH_SELECTOR,
    ROCM_INDEX,
    cuda_major,
    cuda_torch_fix,
    driver_download,
    driver_runs_cuda,
    index_url,
    pip_install_torch,
)

# Memory a model needs on the GPU beyond its weights: the CUDA context, activations, the image.
_GPU_OVERHEAD_GB = 1.0
_BUSY_PCT = 90


def diagnose(report: DoctorReport) -> list[Finding]:
    """Turn facts into findings, most important first. Pure: tests feed it made-up facts."""
    torch = report.torch
    found: list[Finding] = []
    if torch.error is not None:
        found.append(
            Finding(
                "problem",
                f"torch cannot be imported ({torch.error}).",
                fix=_install_torch(report),
                code="torch-missing",
            )
        )
    found.extend(platform_findings(report))
    if torch.error is None:
        found.extend(_torch_findings(report, explained=any(f.level != "note" for f in found)))
    found.extend(_gpu_state_findings(report))
    if torch.error is None and report.device is None:
        found.append(
            Finding(
                "problem",
                f"The configured device cannot be used: {report.device_reason}",
                fix="Leave --device (and CAMCAP_DEVICE) at auto, or use --device cpu.",
                code="device-unusable",
            )
        )
    elif report.device == "cpu" and not any(f.level == "problem" for f in found):
        cpu = "camcap will run on the CPU: expect seconds per caption, not a fraction of one."
        found.append(Finding("note", cpu, code="cpu"))
    found.extend(_model_findings(report))
    if not any(f.level in ("warning", "problem") for f in found):
        found.append(Finding("ok", "Nothing stops camcap from running here.", code="ok"))
    return found


def _torch_findings(report: DoctorReport, *, explained: bool) -> list[Finding]:
    """What the installed torch build makes of this machine's GPU. `explained`: a platform finding
    already says why there is no GPU, so a vaguer finding here would only repeat it."""
    torch, driver, system = report.torch, report.driver, report.os.system
    nvidia = _nvidia(report)
    found: list[Finding] = []
    if torch.cuda is None and torch.hip is None and nvidia:
        gpus = f" ({'; '.join(gpu.label for gpu in driver.gpus)})" if driver.gpus else ""
        why = " (on Windows, PyPI's `pip install torch` is always that build)" if system == "Windows" else ""
        found.append(
            Finding(
                "problem",
                f"An NVIDIA GPU is present{gpus}, but the installed torch {torch.version} is a CPU-only build{why}, "
                "so camcap runs on the CPU (many times slower).",
                fix=_cuda_fix(report),
                code="cpu-only-torch",
            )
        )
    elif torch.cuda is not None and not torch.cuda_available:
        finding = _cuda_unusable(report)
        if not (explained and finding.code in ("no-nvidia-driver", "cuda-unusable")):
            found.append(finding)
    elif torch.cuda is not None and driver.cuda_version:
        found.extend(_newer_minor(report))
    if torch.hip is not None and not torch.cuda_available:
        found.append(_rocm_unusable(report))
    if torch.hip is None and not nvidia and "amd" in report.os.pci_gpus and report.os.kfd and system == "Linux":
        found.append(
            Finding(
                "note",
                f"An AMD GPU is present, but torch {torch.version} is not a ROCm build, so camcap runs on the CPU. "
                "If ROCm supports this GPU (https://rocm.docs.amd.com, 'GPU support'), its torch build can use it.",
                fix=pip_install_torch(ROCM_INDEX),
                code="amd-gpu-without-rocm",
            )
        )
    for gpu in torch.gpus:
        if not gpu.supported:
            found.append(
                Finding(
                    "problem",
                    f"GPU {gpu.index} ({gpu.name}, compute capability {gpu.compute_capability}) has no kernels in "
                    f"torch {torch.version} (built for {', '.join(torch.arch_list)}); running on it fails with "
                    "'no kernel image is available'. It needs a torch build for a newer CUDA.",
                    fix=cuda_torch_fix(driver.version, report.os, (gpu.compute_capability,)),
                    code="gpu-too-new-for-torch",
                )
            )
    return found


def _cuda_unusable(report: DoctorReport) -> Finding:
    """torch is a CUDA build but sees no GPU: say which of the usual reasons applies."""
    torch, driver = report.torch, report.driver
    if _hides_every_gpu(report.cuda_visible_devices, len(driver.gpus)):
        return Finding(
            "problem",
            f"CUDA_VISIBLE_DEVICES={report.cuda_visible_devices!r} hides every GPU from torch.",
            fix=unset_env("CUDA_VISIBLE_DEVICES", report.os),
            code="cuda-visible-devices",
        )
    needed = MIN_DRIVER_FOR_CUDA.get(cuda_major(torch.cuda) or 0)
    if driver.version is None and not _nvidia(report):
        need = f" (version {needed} or newer for CUDA {torch.cuda})" if needed else ""
        looked = "nvidia-smi.exe" if report.os.system == "Windows" else "/proc/driver/nvidia/version, nvidia-smi"
        return Finding(
            "warning",
            f"torch {torch.version} is built for CUDA {torch.cuda}, but no NVIDIA driver was found (looked for "
            f"{looked}): this machine has no NVIDIA GPU, or its driver is not installed{need}. camcap runs on the CPU.",
            fix=f"With an NVIDIA GPU, install its driver: {driver_download(report.os)}. Without one, "
            f"the CPU-only torch is a fraction of the size: {pip_install_torch('cpu')}",
            code="no-nvidia-driver",
        )
    if driver_runs_cuda(driver.version, torch.cuda) is False or _older(driver.cuda_version, torch.cuda, major=True):
        supports = f", which supports CUDA up to {driver.cuda_version}" if driver.cuda_version else ""
        return Finding(
            "problem",
            f"torch {torch.version} is built for CUDA {torch.cuda}, newer than NVIDIA driver {driver.version} "
            f"runs{supports} (CUDA {cuda_major(torch.cuda)}.x needs driver {needed} or newer). Install the torch build "
            "for the CUDA this driver runs, or update the driver.",
            fix=_cuda_fix(report),
            code="torch-cuda-newer-than-driver",
        )
    detail = f" nvidia-smi says: {driver.smi_error}" if driver.smi_error else ""
    return Finding(
        "problem",
        f"torch {torch.version} is built for CUDA {torch.cuda} and an NVIDIA driver is installed, but torch sees no "
        f"usable GPU.{detail}",
        fix="Check that `nvidia-smi` works and the driver is loaded (reboot after installing or updating it); "
        "in a container, start it with the GPU (docker run --gpus all ...).",
        code="cuda-unusable",
    )


def _newer_minor(report: DoctorReport) -> list[Finding]:
    """torch's CUDA is a newer minor release than the driver's: it runs through minor version
    compatibility, except for kernels the driver must compile from PTX."""
    torch, driver = report.torch, report.driver
    if not _older(driver.cuda_version, torch.cuda, major=False):
        return []
    return [
        Finding(
            "note",
            f"torch {torch.version} is built for CUDA {torch.cuda}, the driver ({driver.version}) for CUDA "
            f"{driver.cuda_version}. It runs through CUDA minor version compatibility; if CUDA reports "
            "'the provided PTX was compiled with an unsupported toolchain', update the driver or install the build "
            "that matches it.",
            fix=_cuda_fix(report),
            code="torch-cuda-newer-minor",
        )
    ]


def _rocm_unusable(report: DoctorReport) -> Finding:
    torch, os = report.torch, report.os
    if os.kfd is None:
        where = (
            "this container was started without the AMD GPU"
            if os.container
            else "the amdgpu kernel driver is not loaded, or there is no AMD GPU"
        )
        fix = (
            "docker run --device=/dev/kfd --device=/dev/dri --group-add video ..."
            if os.container
            else "Install AMD's GPU driver (https://rocm.docs.amd.com, 'Quick start installation'), then reboot."
        )
        return Finding(
            "problem",
            f"torch {torch.version} is a ROCm build, but /dev/kfd does not exist: {where}.",
            fix=fix,
            code="rocm-unusable",
        )
    if os.kfd == "no access":
        return Finding(
            "problem",
            f"torch {torch.version} is a ROCm build, but this user may not open /dev/kfd.",
            fix="sudo usermod -aG render,video $USER, then log out and back in",
            code="rocm-unusable",
        )
    return Finding(
        "problem",
        f"torch {torch.version} is a ROCm build and /dev/kfd is usable, but torch sees no GPU: ROCm may not support "
        "this GPU, or the ROCm version of the driver and of torch differ too far.",
        fix=f"Check the GPU with `rocminfo`; install the current ROCm torch: {pip_install_torch(ROCM_INDEX)}",
        code="rocm-unusable",
    )


def _gpu_state_findings(report: DoctorReport) -> list[Finding]:
    """GPUs that exist but that camcap cannot have: taken by other programs, or out of memory."""
    found: list[Finding] = []
    gpus = report.driver.gpus
    for gpu in gpus:
        if gpu.compute_mode == "Prohibited":
            found.append(
                Finding(
                    "problem",
                    f"GPU {gpu.index} ({gpu.name}) is in compute mode Prohibited: no program may run CUDA on it.",
                    fix=f"sudo nvidia-smi -i {gpu.index} -c DEFAULT",
                    code="gpu-busy",
                )
            )
        elif gpu.compute_mode == "Exclusive_Process" and (gpu.utilization_pct or 0) > 0:
            found.append(
                Finding(
                    "warning",
                    f"GPU {gpu.index} ({gpu.name}) is in compute mode Exclusive_Process and busy "
                    f"({gpu.utilization_pct}%): while another program holds it, CUDA says 'all CUDA-capable devices "
                    "are busy or unavailable'.",
                    fix=f"Stop the program `nvidia-smi` lists under Processes, or share the GPU: "
                    f"sudo nvidia-smi -i {gpu.index} -c DEFAULT",
                    code="gpu-busy",
                )
            )
        elif (gpu.utilization_pct or 0) >= _BUSY_PCT:
            found.append(
                Finding(
                    "note",
                    f"GPU {gpu.index} ({gpu.name}) is {gpu.utilization_pct}% busy with other programs: captions will "
                    "come slower while they run.",
                    fix="`nvidia-smi` lists them under Processes.",
                    code="gpu-busy",
                )
            )
    found.extend(_memory_findings(report, gpus))
    return found


def _memory_findings(report: DoctorReport, gpus: tuple[SmiGpu, ...]) -> list[Finding]:
    model = report.model
    if model is None or not model.approx_size_gb or not gpus:
        return []
    need_gb = model.approx_size_gb + _GPU_OVERHEAD_GB
    free = {gpu.index: _free_gb(gpu) for gpu in gpus}
    if any(gb is None or gb >= need_gb for gb in free.values()):
        return []  # one GPU has room (or cannot say)
    detail = "; ".join(f"GPU {gpu.index} ({gpu.name}) has {free[gpu.index]:.1f} GB free" for gpu in gpus)
    return [
        Finding(
            "warning",
            f"{model.spec} needs about {need_gb:g} GB of GPU memory, but {detail}: loading it there fails with "
            "'CUDA out of memory'.",
            fix="Close the programs `nvidia-smi` lists under Processes, or run on the CPU: camcap serve --device cpu",
            code="gpu-out-of-memory",
        )
    ]


def _model_findings(report: DoctorReport) -> list[Finding]:
    model = report.model
    if model is None:
        return [Finding("problem", report.model_error or f"Unknown model spec {report.model_spec!r}.", code="model")]
    if model.available:
        return []
    pull = f"camcap pull {model.spec}"
    if model.source == "random":
        return [Finding("note", f"{model.spec} is built on first use in a few seconds.", fix=pull, code="model")]
    size = f"about {model.approx_size_gb:g} GB" if model.approx_size_gb else "a download"
    found = []
    if report.hf_hub_offline:
        found.append(
            Finding(
                "problem",
                f"{model.spec} is not downloaded and HF_HUB_OFFLINE is set, so camcap cannot load it.",
                fix=f"On a machine with internet, run `{pull}` ({size}), or unset HF_HUB_OFFLINE.",
                code="model-offline",
            )
        )
    else:
        note = f"{model.spec} is not downloaded yet: the first run fetches {size}."
        found.append(Finding("note", note, fix=pull, code="model"))
    hub = report.folders[0]
    if model.approx_size_gb and hub.free_gb is not None and hub.free_gb < model.approx_size_gb * 1.1 + 0.5:
        found.append(
            Finding(
                "problem",
                f"Only {hub.free_gb:.1f} GB is free in {hub.path}, too little for {model.spec} ({size}).",
                fix="Free some space, or point the cache at a bigger disk with CAMCAP_CACHE_DIR=<folder> (or HF_HOME).",
                code="disk-space",
            )
        )
    return found


def _install_torch(report: DoctorReport) -> str:
    if _nvidia(report):
        return _cuda_fix(report)
    if report.os.system == "Linux":
        # Without an NVIDIA GPU the CPU build is enough, and a fraction of the CUDA build's size.
        return f"python -m pip install torch --index-url {index_url('cpu')}"
    return f"python -m pip install torch (other builds: {PYTORCH_SELECTOR})"


def _cuda_fix(report: DoctorReport) -> str:
    capabilities = tuple(gpu.compute_capability for gpu in report.driver.gpus if gpu.compute_capability)
    return cuda_torch_fix(report.driver.version, report.os, capabilities)


def _nvidia(report: DoctorReport) -> bool:
    """Any sign of an NVIDIA GPU: a loaded driver, nvidia-smi, the PCI bus, Windows' display adapters."""
    return (
        report.nvidia_gpu_present
        or report.driver.version is not None
        or bool(report.driver.gpus)
        or "nvidia" in report.os.pci_gpus
        or any("nvidia" in name.lower() for name in report.os.video_controllers)
    )


def _hides_every_gpu(value: str | None, gpu_count: int) -> bool:
    """CUDA stops at the first invalid entry of CUDA_VISIBLE_DEVICES; "", "-1" or an index past the last
    GPU as the first entry hides them all."""
    if value is None:
        return False
    first = value.split(",", 1)[0].strip()
    if first in ("", "-1") or first.lower() in ("none", "nodevfiles", "void"):
        return True
    if first.isdigit():
        return gpu_count > 0 and int(first) >= gpu_count
    return False  # a GPU-/MIG- UUID: cannot be checked here


def _older(driver_cuda: str | None, torch_cuda: str | None, *, major: bool) -> bool:
    """True if the driver's CUDA is older than torch's: by major release, or (major=False) by minor within one."""
    if not driver_cuda or not torch_cuda:
        return False
    try:
        have = tuple(int(part) for part in driver_cuda.split(".")[:2])
        want = tuple(int(part) for part in torch_cuda.split(".")[:2])
    except ValueError:
        return False
    if major:
        return want[0] > have[0]
    return want[0] == have[0] and want > have


def _free_gb(gpu: SmiGpu) -> float | None:
    if gpu.memory_total_mib is None or gpu.memory_used_mib is None:
        return None
    return (gpu.memory_total_mib - gpu.memory_used_mib) / 1024
