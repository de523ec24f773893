"""The `camcap doctor` report as aligned plain text: facts by section, then the findings."""

from __future__ import annotations

from camcap.doctor._report import DoctorReport
from camcap.models.store import human_size

_MARKS = {"ok": "ok", "note": "note", "warning": "WARNING", "problem": "PROBLEM"}


def render_report(report: DoctorReport) -> str:
    """The report as aligned plain text, findings last (they are what a reader acts on)."""
    torch, driver = report.torch, report.driver
    if torch.error is not None:
        torch_line = f"not importable: {torch.error}"
    else:
        build = f"CUDA {torch.cuda}" if torch.cuda else f"ROCm {torch.hip}" if torch.hip else "CPU-only build"
        torch_line = f"{torch.version} ({build}, cuDNN {torch.cudnn or 'none'})"
    gpus = [f"{g.index}: {g.name}, {g.memory_gb:g} GB, compute capability {g.compute_capability}" for g in torch.gpus]
    driver_line = driver.version or ("not found" if not report.nvidia_gpu_present else "present, version unknown")
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
                ("nvidia-smi", "; ".join(driver.gpus) or driver.smi_error or "not found"),
                ("CUDA GPUs (torch)", "\n".join(gpus) or "none"),
                (
                    "CUDA_VISIBLE_DEVICES",
                    "unset" if report.cuda_visible_devices is None else report.cuda_visible_devices,
                ),
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
    lines.extend(f"  [{_MARKS[finding.level]}] {finding.message}" for finding in report.findings)
    return "\n".join(lines)


def _free(free_gb: float | None) -> str:
    return "free space unknown" if free_gb is None else f"{free_gb:g} GB free"
