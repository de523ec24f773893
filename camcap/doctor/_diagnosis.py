"""Turning a `camcap doctor` report's facts into findings: what is wrong, and the command that fixes it.

`diagnose()` is pure: it reads a `DoctorReport` and nothing else, so tests feed it made-up
machines (a CPU-only torch next to an NVIDIA GPU, a driver too old for torch's CUDA, ...).
"""

from __future__ import annotations

from camcap.doctor._report import DoctorReport, DriverFacts, Finding

# Oldest NVIDIA driver (major version) that runs a CUDA major release through minor-version
# compatibility (NVIDIA's CUDA compatibility guide, table 1). Newer drivers always work.
MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}


def diagnose(report: DoctorReport) -> list[Finding]:
    """Turn facts into findings, most important first. Pure: tests feed it made-up facts."""
    torch, driver = report.torch, report.driver
    nvidia = report.nvidia_gpu_present or driver.version is not None
    found: list[Finding] = []
    if torch.error is not None:
        if nvidia:
            fix = _pip_torch(driver)
        elif report.platform.startswith("Linux"):
            # Without an NVIDIA GPU the CPU build is enough, and a fraction of the CUDA build's size.
            fix = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
        else:
            fix = "pip install torch"
        found.append(Finding("problem", f"torch cannot be imported ({torch.error}). Install it: {fix}"))
    elif torch.cuda is None and torch.hip is None and nvidia:
        gpus = f" ({'; '.join(driver.gpus)})" if driver.gpus else ""
        found.append(
            Finding(
                "problem",
                f"An NVIDIA GPU is present{gpus}, but the installed torch {torch.version} is a CPU-only build, so "
                f"camcap runs on the CPU (many times slower). Install a CUDA build: {_pip_torch(driver)}",
            )
        )
    elif torch.cuda is not None and not torch.cuda_available:
        found.append(_cuda_unusable(report))
    for gpu in torch.gpus:
        if not gpu.supported:
            found.append(
                Finding(
                    "problem",
                    f"GPU {gpu.index} ({gpu.name}, compute capability {gpu.compute_capability}) has no kernels in "
                    f"torch {torch.version} (built for {', '.join(torch.arch_list)}); running on it fails with "
                    f"'no kernel image is available'. Install a torch build for a newer CUDA: {_pip_torch(driver)}",
                )
            )
    if torch.error is None and report.device is None:
        found.append(Finding("problem", f"The configured device cannot be used: {report.device_reason}"))
    elif report.device == "cpu" and not any(f.level == "problem" for f in found):
        found.append(Finding("note", "camcap will run on the CPU: expect seconds per caption rather than a fraction."))
    found.extend(_model_findings(report))
    if not any(f.level in ("warning", "problem") for f in found):
        found.append(Finding("ok", "Nothing stops camcap from running here."))
    return found


def _cuda_unusable(report: DoctorReport) -> Finding:
    """torch is a CUDA build but sees no GPU: say which of the usual reasons applies."""
    torch, driver = report.torch, report.driver
    needed = MIN_DRIVER_FOR_CUDA.get(_major(torch.cuda) or 0)
    driver_major = _major(driver.version)
    if report.cuda_visible_devices is not None and report.cuda_visible_devices.strip() in ("", "-1"):
        return Finding(
            "problem",
            f"CUDA_VISIBLE_DEVICES={report.cuda_visible_devices!r} hides every GPU from torch. Unset it.",
        )
    if driver.version is None and not report.nvidia_gpu_present:
        need = f" (version {needed} or newer for CUDA {torch.cuda})" if needed else ""
        return Finding(
            "warning",
            f"torch {torch.version} is built for CUDA {torch.cuda}, but no NVIDIA driver was found "
            "(no /proc/driver/nvidia/version, no nvidia-smi): this machine has no NVIDIA GPU, or its driver is not "
            f"installed{need}. camcap runs on the CPU.",
        )
    if driver_major is not None and needed is not None and driver_major < needed:
        return Finding(
            "problem",
            f"NVIDIA driver {driver.version} is too old for torch's CUDA {torch.cuda} (needs {needed} or newer). "
            f"Update the driver, or install a torch build for an older CUDA: {_pip_torch(driver)}",
        )
    detail = f" nvidia-smi says: {driver.smi_error}" if driver.smi_error else ""
    return Finding(
        "problem",
        f"torch {torch.version} is built for CUDA {torch.cuda} and an NVIDIA driver is installed, but torch sees no "
        f"usable GPU.{detail} Check that `nvidia-smi` works, that the driver is loaded (reboot after installing "
        "or updating it), and in a container that it was started with GPU access (docker run --gpus all).",
    )


def _model_findings(report: DoctorReport) -> list[Finding]:
    model = report.model
    if model is None:
        return [Finding("problem", report.model_error or f"Unknown model spec {report.model_spec!r}.")]
    if model.available:
        return []
    pull = f"camcap pull {model.spec}"
    if model.source == "random":
        return [Finding("note", f"{model.spec} is built on first use in a few seconds (or now: `{pull}`).")]
    size = f"about {model.approx_size_gb:g} GB" if model.approx_size_gb else "a download"
    found = []
    if report.hf_hub_offline:
        found.append(
            Finding(
                "problem",
                f"{model.spec} is not downloaded and HF_HUB_OFFLINE is set, so camcap cannot load it. "
                f"On a machine with internet, run `{pull}` ({size}), or unset HF_HUB_OFFLINE.",
            )
        )
    else:
        found.append(Finding("note", f"{model.spec} is not downloaded yet: the first run fetches {size}, or `{pull}`."))
    hub = report.folders[0]
    if model.approx_size_gb and hub.free_gb is not None and hub.free_gb < model.approx_size_gb * 1.1 + 0.5:
        found.append(
            Finding(
                "problem",
                f"Only {hub.free_gb:.1f} GB is free in {hub.path}, too little for {model.spec} ({size}). Free some "
                "space, or point the cache at a bigger disk with CAMCAP_CACHE_DIR=<folder> (or HF_HOME).",
            )
        )
    return found


def _pip_torch(driver: DriverFacts) -> str:
    """The install command for a CUDA build that the detected driver can run."""
    major = _major(driver.version)
    # CUDA 12.8 runs on any driver from 525 (and has kernels for the newest GPUs); 13.x needs 580.
    # With the driver unknown, 12.8 is the safer bet.
    cuda = "cu130" if major is not None and major >= MIN_DRIVER_FOR_CUDA[13] else "cu128"
    if major is not None and major < MIN_DRIVER_FOR_CUDA[12]:
        return (
            f"first update the NVIDIA driver ({driver.version} is older than {MIN_DRIVER_FOR_CUDA[12]}, the oldest "
            "current torch builds support), then: pip install --force-reinstall torch "
            "--index-url https://download.pytorch.org/whl/cu128"
        )
    return (
        f"pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/{cuda} "
        "(other builds: https://pytorch.org/get-started/locally/)"
    )


def _major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None
