"""Findings about the operating system: WSL, Windows, macOS and containers, where GPU access breaks
before torch is involved. Pure functions of a `DoctorReport`, like the rest of the diagnosis."""

from __future__ import annotations

from camcap.doctor._platform import WSL_LIBCUDA, parse_mac_version
from camcap.doctor._report import DoctorReport, Finding, PlatformFacts
from camcap.doctor._torch_builds import driver_download

# torch.backends.mps needs macOS 12.3 (PyTorch's "MPS backend" notes).
_MPS_MACOS = (12, 3)
_SHELL_NOTE = " (in PowerShell)"


def platform_findings(report: DoctorReport) -> list[Finding]:
    os = report.os
    if report.torch.cuda_available:
        return []  # torch reached a GPU: whatever the files say, the way to it works
    if os.system == "Linux" and os.wsl is not None:
        return _wsl_findings(report)
    if os.system == "Linux":
        return _linux_findings(report)
    if os.system == "Windows":
        return _windows_findings(report)
    if os.system == "Darwin":
        return _mac_findings(report)
    return []


def unset_env(name: str, os: PlatformFacts) -> str:
    """The command that removes an environment variable in the user's shell."""
    if os.system == "Windows":
        return f"Remove-Item Env:{name}{_SHELL_NOTE}, or `set {name}=` in cmd.exe"
    return f"unset {name}"


def _wsl_findings(report: DoctorReport) -> list[Finding]:
    os = report.os
    distro = os.wsl_distro or "<distro>"
    if os.wsl == 1:
        return [
            Finding(
                "warning",
                "This is WSL 1, which has no GPU access at all: CUDA needs WSL 2, so camcap runs on the CPU.",
                fix=f"In Windows PowerShell: wsl --set-version {distro} 2 (`wsl -l -v` lists the versions)",
                code="wsl1",
            )
        ]
    found = []
    if os.linux_libcuda:
        packages = " ".join(os.linux_driver_packages)
        remove = (
            f"sudo apt-get remove --purge {packages}"
            if packages
            else f"remove the package that installed it (`dpkg -S {os.linux_libcuda[0]}` names it)"
        )
        found.append(
            Finding(
                "problem",
                f"A Linux NVIDIA driver is installed inside WSL ({', '.join(os.linux_libcuda)}): it shadows the "
                "Windows driver's CUDA bridge in /usr/lib/wsl/lib, and CUDA fails or reports no GPU. Inside WSL "
                "install only the CUDA toolkit (cuda-toolkit-XX), never `cuda`, `cuda-drivers` or `nvidia-driver-*`.",
                fix=f"{remove}, then in Windows PowerShell: wsl --shutdown",
                code="wsl-linux-driver",
            )
        )
    if not os.wsl_libcuda:
        found.append(
            Finding(
                "warning",
                f"WSL 2 without {WSL_LIBCUDA}: the Windows NVIDIA driver does not reach WSL (it is missing, or too "
                "old for WSL: CUDA in WSL needs driver 470 or newer), so torch sees no GPU. If this PC has an "
                "NVIDIA GPU, update its driver in Windows.",
                fix=f"{driver_download(os)}; also run `wsl --update`",
                code="wsl-no-windows-driver",
            )
        )
    return found


def _linux_findings(report: DoctorReport) -> list[Finding]:
    os = report.os
    nvidia_seen = "nvidia" in os.pci_gpus or report.driver.version is not None or report.nvidia_gpu_present
    if not nvidia_seen or any(name[len("/dev/nvidia") :].isdigit() for name in os.dev_nvidia):
        return []
    if os.container:
        return [
            Finding(
                "problem",
                f"This {os.container} container sees an NVIDIA GPU on the host but has no /dev/nvidia* device: "
                "it was started without GPU access.",
                fix="docker run --gpus all ... (the host needs the NVIDIA Container Toolkit); podman: "
                "podman run --device nvidia.com/gpu=all ...",
                code="container-without-gpu",
            )
        ]
    if report.driver.version is None:
        return [
            Finding(
                "problem",
                "An NVIDIA GPU is on the PCI bus, but no NVIDIA driver is loaded (no /proc/driver/nvidia/version).",
                fix=driver_download(os),
                code="no-nvidia-driver",
            )
        ]
    return [
        Finding(
            "problem",
            f"The NVIDIA driver {report.driver.version} is loaded, but there is no /dev/nvidia0 device file.",
            fix="sudo nvidia-modprobe -c 0 -u, or reboot",
            code="no-nvidia-device",
        )
    ]


def _windows_findings(report: DoctorReport) -> list[Finding]:
    os, driver = report.os, report.driver
    nvidia_adapters = [name for name in os.video_controllers if "nvidia" in name.lower()]
    if nvidia_adapters and driver.smi_path is None and driver.version is None:
        return [
            Finding(
                "problem",
                f"Windows lists an NVIDIA GPU ({'; '.join(nvidia_adapters)}), but nvidia-smi.exe is not found: its "
                "driver is not installed (Windows' basic display driver has no CUDA).",
                fix=driver_download(os),
                code="no-nvidia-driver",
            )
        ]
    return []


def _mac_findings(report: DoctorReport) -> list[Finding]:
    os, torch = report.os, report.torch
    if os.rosetta:
        return [
            Finding(
                "problem",
                f"This Python ({os.machine}) is an Intel build running under Rosetta 2 on Apple silicon: torch cannot "
                "use the GPU (MPS) from it, and current torch releases have no Intel-Mac builds.",
                fix="Install an arm64 Python 3.10+ (python.org's installer, or Homebrew in /opt/homebrew), then "
                "recreate the venv with it: rm -rf .venv && arch -arm64 python3 -m venv .venv && . .venv/bin/activate "
                '&& python -m pip install -e . (python -c "import platform; print(platform.machine())" must say arm64)',
                code="rosetta",
            )
        ]
    if torch.error is not None or torch.mps:
        return []
    if not os.apple_silicon and os.machine != "arm64":
        return [
            Finding(
                "note",
                "An Intel Mac: torch's GPU backend (MPS) is for Apple silicon, and current torch releases have no "
                "Intel-Mac builds, so camcap runs on the CPU. A small model keeps captions quick.",
                fix="camcap serve --model hf:Salesforce/blip-image-captioning-base",
                code="intel-mac",
            )
        ]
    version = parse_mac_version(os.mac_version)
    if version and version < _MPS_MACOS:
        return [
            Finding(
                "problem",
                f"macOS {os.mac_version} is too old for torch's Apple GPU backend (MPS needs macOS 12.3 or newer), "
                "so camcap runs on the CPU.",
                fix="Update macOS: System Settings > General > Software Update",
                code="no-mps",
            )
        ]
    if not torch.mps_built:
        return [
            Finding(
                "problem",
                f"torch {torch.version} was built without Apple's GPU backend (MPS), so camcap runs on the CPU.",
                fix="python -m pip install --force-reinstall torch (PyPI's macOS builds have MPS)",
                code="no-mps",
            )
        ]
    return [
        Finding(
            "problem",
            f"torch {torch.version} has Apple's GPU backend (MPS), but it is not available on this Mac "
            "(torch.backends.mps.is_available() is False).",
            fix="Update macOS and torch: python -m pip install --upgrade torch",
            code="no-mps",
        )
    ]
