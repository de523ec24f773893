"""What this machine offers camcap, and what is wrong with it: the report behind `camcap doctor`.

`collect_report()` gathers facts without ever failing (no GPU, no driver, no nvidia-smi, even no
torch are all facts, not crashes); `diagnose()` turns them into findings that say what is wrong
and the command that fixes it; `render_report()` prints them. Whether the model is on disk comes from
`camcap.models.store`, which `camcap models` shares.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from camcap.config import Settings
from camcap.errors import CamcapError
from camcap.models.device import nvidia_gpu_present
from camcap.models.options import ModelOptions
from camcap.models.registry import camcap_cache_dir, hub_cache_dir
from camcap.models.store import ModelStatus, human_size, model_status

Level = Literal["ok", "note", "warning", "problem"]

# Oldest NVIDIA driver (major version) that runs a CUDA major release through minor-version
# compatibility (NVIDIA's CUDA compatibility guide, table 1). Newer drivers always work.
MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}
_DRIVER_VERSION = re.compile(r"\b(\d+\.\d+(?:\.\d+)?)\b")


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


def collect_report(settings: Settings) -> DoctorReport:
    """Gather every fact the report shows, then diagnose them. Never raises for missing hardware."""
    # Only the cache folder matters here; the other options are the model's business.
    options = ModelOptions(cache_dir=settings.cache_dir)
    torch = torch_facts()
    device, dtype, reason = None, None, "torch is not importable."
    if torch.error is None:
        from camcap.models.device import choose_device

        try:
            choice = choose_device(settings.device, settings.dtype)
            device, dtype, reason = choice.device, choice.dtype, choice.reason
        except CamcapError as exc:
            reason = str(exc)
    hub = hub_cache_dir(options) or _default_hub_cache()
    folders = (
        Folder("Hugging Face cache", str(hub), _free_gb(hub)),
        Folder("camcap cache", str(camcap_cache_dir(options)), _free_gb(camcap_cache_dir(options))),
    )
    model, model_error = None, None
    try:
        model = model_status(settings.model, options)
    except CamcapError as exc:
        model_error = str(exc)
    except Exception as exc:  # a broken install must not stop the rest of the report
        model_error = f"could not check the model ({type(exc).__name__}: {exc})."
    report = DoctorReport(
        python=f"{platform.python_version()} ({sys.executable})",
        platform=platform.platform(),
        versions={name: _version(name) for name in ("camcap", "torch", "transformers", "huggingface_hub")},
        torch=torch,
        driver=driver_facts(),
        nvidia_gpu_present=nvidia_gpu_present(),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        device=device,
        dtype=dtype,
        device_reason=reason,
        hf_hub_offline=_hub_offline(),
        folders=folders,
        model_spec=settings.model,
        model=model,
        model_error=model_error,
    )
    return dataclasses.replace(report, findings=tuple(diagnose(report)))


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


# --- facts ------------------------------------------------------------------------------------


def torch_facts() -> TorchFacts:
    """What the installed torch can do. A broken or missing torch is a fact, not a crash."""
    try:
        import torch
    except Exception as exc:  # ImportError, or OSError from a broken CUDA library
        return TorchFacts(error=f"{type(exc).__name__}: {exc}")
    cuda_available = _safely(torch.cuda.is_available, False)
    arch_list = tuple(_safely(torch.cuda.get_arch_list, [])) if torch.version.cuda else ()
    gpus = _safely(lambda: _torch_gpus(torch, arch_list), ()) if cuda_available else ()
    mps = getattr(torch.backends, "mps", None)
    return TorchFacts(
        version=torch.__version__,
        cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        cudnn=_cudnn_version(_safely(torch.backends.cudnn.version, None)),
        cuda_available=cuda_available,
        arch_list=arch_list,
        gpus=gpus,
        mps=bool(mps is not None and _safely(mps.is_available, False)),
    )


def _torch_gpus(torch: Any, arch_list: tuple[str, ...]) -> tuple[GpuInfo, ...]:
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            GpuInfo(
                index=index,
                name=props.name,
                memory_gb=round(props.total_memory / 1024**3, 1),
                compute_capability=f"{props.major}.{props.minor}",
                supported=_arch_supported(props.major, props.minor, arch_list),
            )
        )
    return tuple(gpus)


def driver_facts() -> DriverFacts:
    """The NVIDIA driver as the OS sees it, independent of torch. Absent tools are not errors."""
    try:
        version = parse_driver_version(Path("/proc/driver/nvidia/version").read_text(errors="replace"))
    except OSError:  # no NVIDIA kernel module loaded (or not Linux)
        version = None
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return DriverFacts(version=version)
    query = [smi, "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return DriverFacts(version=version, smi_error=str(exc))
    if done.returncode != 0:
        return DriverFacts(version=version, smi_error=(done.stdout + done.stderr).strip()[:300] or "failed")
    rows = [line.split(",", 1) for line in done.stdout.splitlines() if line.strip()]
    gpus = tuple(row[1].strip() for row in rows if len(row) == 2)
    return DriverFacts(version=version or (rows[0][0].strip() if rows else None), gpus=gpus)


def parse_driver_version(proc_text: str) -> str | None:
    """The version in /proc/driver/nvidia/version, e.g. "NVRM version: NVIDIA UNIX x86_64 Kernel
    Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024" (the open kernel module words it differently)."""
    match = _DRIVER_VERSION.search(proc_text.partition("\n")[0])
    return match.group(1) if match else None


# --- small helpers ----------------------------------------------------------------------------


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


def _arch_supported(major: int, minor: int, arch_list: tuple[str, ...]) -> bool:
    """True if torch ships a cubin for this GPU's major version at or below its minor version, or PTX
    at or below its capability (which the driver compiles just in time)."""
    if not arch_list:
        return True  # unknown: do not cry wolf
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        digits = digits.rstrip("abcdefghijklmnopqrstuvwxyz")  # sm_90a -> 90
        if not digits.isdigit():
            continue
        arch_major, arch_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
    return False


def _cudnn_version(raw: int | None) -> str | None:
    if not raw:
        return None
    # cuDNN 9 encodes 9.1.2 as 90102; cuDNN 8 encoded 8.9.7 as 8907.
    major, rest = (raw // 10000, raw % 10000) if raw >= 90000 else (raw // 1000, raw % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _safely(call: Any, default: Any) -> Any:
    """Call a torch probe that can raise on broken installs; the report shows the default."""
    try:
        return call()
    except Exception:
        return default


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _hub_offline() -> bool:
    from camcap.models.hub import hub_offline

    return hub_offline()


def _default_hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _free_gb(path: Path) -> float | None:
    # The folder may not exist yet: measure the disk it will be created on.
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return round(shutil.disk_usage(candidate).free / 1024**3, 1)
            except OSError:
                return None
    return None


# --- rendering --------------------------------------------------------------------------------

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
