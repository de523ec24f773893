"""The `camcap doctor` report as aligned plain text: facts by section, then the findings."""

from __future__ import annotations

from camcap.doctor._report import DoctorReport, SmiGpu
from camcap.models.store import human_size

_MARKS = {"ok": "ok", "note": "note", "warning": "WARNING", "problem": "PROBLEM"}


def render_report(report: DoctorReport) -> str:
    """The report as aligned plain text, findings last (they are what a reader acts on)."""
    torch, driver = report.torch, report.driver
    if torch.error is not None:
        torch_line = f"not importable: {torch.error}"
    else:
        build = f"CUDA {torch.cuda}" if torch.cuda else f"ROCm {torch.hip}" if torch.hip else "CPU-only build"
        build = f"{torch.build}: {build}" if torch.build and torch.build != "cpu" else build
        torch_line = f"{torch.version} ({build}, cuDNN {torch.cudnn or 'none'})"
    gpus = [f"{g.index}: {g.name}, {g.memory_gb:g} GB, compute capability {g.compute_capability}" for g in torch.gpus]
    driver_line = driver.version or ("not found" if not report.nvidia_gpu_present else "present, version unknown")
    if driver.version and driver.cuda_version:
        driver_line += f" (runs CUDA up to {driver.cuda_version})"
    if report.device is not None:
        device_line = f"{report.device} ({report.dtype}): {report.device_reason}"
    else:
        device_line = f"none: {report.device_reason}"
    model = report.model
    if model is None:
        model_line = "could not be checked (see findings)"
    elif model.source == "remote":
        model_line = f"runs on {model.path} (frames are sent there)"
    elif model.available:
        model_line = f"on disk, {human_size(model.size_on_disk_bytes)} at {model.path}"
    else:
        model_line = "not downloaded" if model.source != "random" else "not built yet"
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Software",
            [
                ("Python", report.python),
                ("Platform", report.platform),
                ("System", _system_line(report)),
                ("camcap", report.versions.get("camcap") or "not installed (running from a source tree)"),
                ("torch", torch_line),
                ("transformers", report.versions.get("transformers") or "not installed"),
                ("huggingface_hub", report.versions.get("huggingface_hub") or "not installed"),
            ],
        ),
        (
            "Hardware",
            [
                ("NVIDIA driver", driver_line),
                ("nvidia-smi", "\n".join(_smi_gpu_line(gpu) for gpu in driver.gpus) or driver.smi_error or "not found"),
                ("CUDA GPUs (torch)", "\n".join(gpus) or "none"),
                (
                    "CUDA_VISIBLE_DEVICES",
                    "unset" if report.cuda_visible_devices is None else report.cuda_visible_devices,
                ),
                *_platform_rows(report),
                ("Apple MPS", "available" if torch.mps else "no"),
                ("camcap would use", device_line),
            ],
        ),
        (
            "Model and caches",
            [
                (f"model {report.model_spec}", model_line),
                *[(folder.name, f"{folder.path} ({_free(folder.free_gb)})") for folder in report.folders],
                ("HF_HUB_OFFLINE", "on (no downloads)" if report.hf_hub_offline else "off"),
            ],
        ),
    ]
    lines: list[str] = []
    width = max(len(key) for _, rows in sections for key, _ in rows)
    for title, rows in sections:
        lines.append(title)
        for key, value in rows:
            first, *rest = value.splitlines() or [""]
            lines.append(f"  {key:<{width}}  {first}")
            lines.extend(f"  {'':<{width}}  {line}" for line in rest)
        lines.append("")
    lines.append("Findings")
    for finding in report.findings:
        code = f" ({finding.code})" if finding.code else ""
        lines.append(f"  [{_MARKS[finding.level]}] {finding.message}{code}")
        if finding.fix:
            lines.append(f"      fix: {finding.fix}")
    return "\n".join(lines)


def _system_line(report: DoctorReport) -> str:
    os = report.os
    if os.wsl is not None:
        return f"WSL {os.wsl} ({os.wsl_distro or 'Linux'} on Windows), {os.machine}"
    if os.system == "Darwin":
        chip = "Apple silicon" if os.apple_silicon or os.machine == "arm64" else "Intel"
        rosetta = ", this Python under Rosetta 2" if os.rosetta else ""
        return f"macOS {os.mac_version or '?'} on {chip}{rosetta}"
    container = f", in a {os.container} container" if os.container else ""
    return f"{os.system} {os.machine}{container}"


def _platform_rows(report: DoctorReport) -> list[tuple[str, str]]:
    os = report.os
    rows = []
    if os.wsl == 2:
        rows.append(("WSL libcuda", "present" if os.wsl_libcuda else "missing (no Windows driver reaches WSL)"))
        if os.linux_libcuda:
            rows.append(("Linux libcuda in WSL", ", ".join(os.linux_libcuda)))
    elif os.system == "Linux":
        rows.append(("/dev/nvidia*", ", ".join(os.dev_nvidia) or "none"))
        rows.append(("PCI display devices", ", ".join(os.pci_gpus) or "none found"))
        if os.kfd or "amd" in os.pci_gpus:
            rows.append(("/dev/kfd (ROCm)", os.kfd or "absent"))
    elif os.system == "Windows":
        rows.append(("Display adapters", "; ".join(os.video_controllers) or "unknown"))
    return rows


def _smi_gpu_line(gpu: SmiGpu) -> str:
    parts = [f"{gpu.index}: {gpu.name}"]
    if gpu.memory_total_mib is not None and gpu.memory_used_mib is not None:
        parts.append(f"{gpu.memory_used_mib}/{gpu.memory_total_mib} MiB used")
    if gpu.utilization_pct is not None:
        parts.append(f"{gpu.utilization_pct}% busy")
    if gpu.compute_mode and gpu.compute_mode != "Default":
        parts.append(f"compute mode {gpu.compute_mode}")
    if gpu.compute_capability:
        parts.append(f"compute capability {gpu.compute_capability}")
    return ", ".join(parts)


def _free(free_gb: float | None) -> str:
    return "free space unknown" if free_gb is None else f"{free_gb:g} GB free"
