"""Gathering the facts of a `camcap doctor` report: torch, the NVIDIA driver, cache folders, the model.

Nothing here fails for missing hardware: no GPU, no driver, no nvidia-smi, even no torch are all
facts, not crashes. `collect_report()` gathers them and hands them to `diagnose()`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from camcap.config import Settings
from camcap.doctor._diagnosis import diagnose
from camcap.doctor._platform import platform_facts
from camcap.doctor._report import DoctorReport, DriverFacts, Folder, GpuInfo, SmiGpu, TorchFacts
from camcap.errors import CamcapError
from camcap.models.device import nvidia_gpu_present
from camcap.models.options import ModelOptions
from camcap.models.registry import camcap_cache_dir, hub_cache_dir
from camcap.models.store import model_status

_DRIVER_VERSION = re.compile(r"\b(\d+\.\d+(?:\.\d+)?)\b")
_SMI_CUDA = re.compile(r"CUDA Version\s*:\s*(\d+\.\d+)")
_WSL_SMI = "/usr/lib/wsl/lib/nvidia-smi"


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
        os=platform_facts(),
    )
    return dataclasses.replace(report, findings=tuple(diagnose(report)))


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
        mps_built=bool(mps is not None and _safely(mps.is_built, False)),
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
    except OSError:  # no NVIDIA kernel module loaded (or not Linux, or WSL)
        version = None
    smi = _find_nvidia_smi()
    if smi is None:
        return DriverFacts(version=version)
    fields = _SMI_FIELDS
    try:
        done = _run_smi([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
        if done.returncode != 0 and "compute_cap" in done.stdout + done.stderr:
            fields = _SMI_FIELDS[:-1]  # drivers before 510 cannot report the compute capability
            done = _run_smi([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError) as exc:
        return DriverFacts(version=version, smi_path=smi, smi_error=str(exc))
    if done.returncode != 0:
        error = (done.stdout + done.stderr).strip()[:300] or "failed"
        return DriverFacts(version=version, smi_path=smi, smi_error=error)
    smi_version, gpus = parse_smi_query(done.stdout, fields)
    try:
        header = _run_smi([smi]).stdout
    except (OSError, subprocess.SubprocessError):
        header = ""
    return DriverFacts(
        version=version or smi_version,
        cuda_version=parse_smi_cuda_version(header),
        gpus=gpus,
        smi_path=smi,
    )


# What `nvidia-smi --query-gpu` reports per GPU; compute_cap last, as old drivers lack it.
_SMI_FIELDS = (
    "driver_version",
    "name",
    "memory.total",
    "memory.used",
    "utilization.gpu",
    "compute_mode",
    "compute_cap",
)


def parse_smi_query(csv_text: str, fields: tuple[str, ...] = _SMI_FIELDS) -> tuple[str | None, tuple[SmiGpu, ...]]:
    """The driver version and GPUs from `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`.

    One line per GPU, e.g. "550.54.14, NVIDIA L4, 23034, 1, 0, Default, 8.9"; "[N/A]" where a
    GPU cannot say (memory of some laptop GPUs, utilisation under WSL).
    """
    version, gpus = None, []
    for index, line in enumerate(row for row in csv_text.splitlines() if row.strip()):
        row = dict(zip(fields, (cell.strip() for cell in line.split(",")), strict=False))
        version = version or row.get("driver_version") or None
        gpus.append(
            SmiGpu(
                index=index,
                name=row.get("name") or "unknown GPU",
                memory_total_mib=_number(row.get("memory.total")),
                memory_used_mib=_number(row.get("memory.used")),
                utilization_pct=_number(row.get("utilization.gpu")),
                compute_mode=_known(row.get("compute_mode")),
                compute_capability=_known(row.get("compute_cap")),
            )
        )
    return version, tuple(gpus)


def parse_smi_cuda_version(smi_output: str) -> str | None:
    """The newest CUDA the driver supports, from plain `nvidia-smi`'s header
    ("| NVIDIA-SMI 550.54.14   Driver Version: 550.54.14   CUDA Version: 12.4 |") or `nvidia-smi -q`."""
    match = _SMI_CUDA.search(smi_output)
    return match.group(1) if match else None


def parse_driver_version(proc_text: str) -> str | None:
    """The version in /proc/driver/nvidia/version, e.g. "NVRM version: NVIDIA UNIX x86_64 Kernel
    Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024" (the open kernel module words it differently)."""
    match = _DRIVER_VERSION.search(proc_text.partition("\n")[0])
    return match.group(1) if match else None


def _find_nvidia_smi() -> str | None:
    # WSL 2 keeps the Windows driver's nvidia-smi in /usr/lib/wsl/lib, which is not always on PATH.
    found = shutil.which("nvidia-smi")
    if found is None and os.path.exists(_WSL_SMI):
        return _WSL_SMI
    return found


def _run_smi(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)


def _number(cell: str | None) -> int | None:
    try:
        return round(float(cell)) if cell else None
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def _known(cell: str | None) -> str | None:
    return cell if cell and not cell.startswith("[") else None


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
