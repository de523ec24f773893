"""Facts about the operating system around torch: WSL, containers, device files, Windows, macOS.

GPU access usually breaks here before torch is involved: WSL 1 (no GPU at all), a Windows driver
that does not reach WSL 2, a Linux driver installed inside WSL, a container started without the
GPU, an x86_64 Python under Rosetta. Every probe is a file read or a short command that may be
absent; none raises. The `parse_*` functions take recorded text, so tests feed them fixtures.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from camcap.doctor._report import PlatformFacts

WSL_LIBCUDA = "/usr/lib/wsl/lib/libcuda.so"
# Where a Linux NVIDIA driver puts libcuda.so; inside WSL 2 one found here shadows WSL's own.
_LINUX_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
_PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}


def platform_facts() -> PlatformFacts:
    """Gather the operating system's facts. Never raises."""
    system = platform.system()
    facts = PlatformFacts(system=system, machine=platform.machine(), release=platform.release())
    if system == "Linux":
        return _linux_facts(facts)
    if system == "Windows":
        return PlatformFacts(**{**facts.__dict__, "video_controllers": _windows_video_controllers()})
    if system == "Darwin":
        return PlatformFacts(
            **{
                **facts.__dict__,
                "mac_version": platform.mac_ver()[0] or None,
                "apple_silicon": _sysctl("hw.optional.arm64") == "1",
                "rosetta": _sysctl("sysctl.proc_translated") == "1",
            }
        )
    return facts


def parse_wsl_version(proc_version: str) -> int | None:
    """1 or 2 inside WSL, from /proc/version; None elsewhere.

    WSL 1: "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) ..." (a translation layer,
    capitalised "Microsoft"); WSL 2: "Linux version 5.15.167.4-microsoft-standard-WSL2 ..." (a real
    kernel; older ones end in "-microsoft-standard" without "WSL2").
    """
    lower = proc_version.lower()
    if "microsoft" not in lower:
        return None
    return 2 if "wsl2" in lower or "microsoft-standard" in lower else 1


def parse_dpkg_owners(dpkg_output: str) -> tuple[str, ...]:
    """Package names from `dpkg -S <file>...`: "libnvidia-compute-550:amd64: /usr/lib/.../libcuda.so.1"."""
    owners = []
    for line in dpkg_output.splitlines():
        head, _, path = line.partition(": ")
        package = head.split(",")[0].strip()
        if path.startswith("/") and package and " " not in package and package not in owners:
            owners.append(package)
    return tuple(owners)


def parse_mac_version(version: str | None) -> tuple[int, ...]:
    """The numbers of a macOS version: "14.5" -> (14, 5); unknown -> ()."""
    if not version:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _linux_facts(facts: PlatformFacts) -> PlatformFacts:
    wsl = parse_wsl_version(_read("/proc/version") or "")
    changes: dict[str, object] = {
        "wsl": wsl,
        "container": _container(),
        "dev_nvidia": tuple(sorted(glob.glob("/dev/nvidia*"))),
        "pci_gpus": _pci_display_vendors(),
        "kfd": _kfd(),
    }
    if wsl is not None:
        libcuda = _linux_libcuda()
        changes.update(
            wsl_distro=os.environ.get("WSL_DISTRO_NAME"),
            wsl_libcuda=Path(WSL_LIBCUDA).exists() or Path(WSL_LIBCUDA + ".1").exists(),
            linux_libcuda=libcuda,
            linux_driver_packages=_dpkg_owners(libcuda),
        )
    return PlatformFacts(**{**facts.__dict__, **changes})


def _linux_libcuda() -> tuple[str, ...]:
    """libcuda.so files that are not links into /usr/lib/wsl: a Linux driver installed inside WSL."""
    found = []
    for folder in _LINUX_LIB_DIRS:
        for path in sorted(glob.glob(f"{folder}/libcuda.so*")):
            try:
                target = os.path.realpath(path)
            except OSError:
                continue
            if not target.startswith("/usr/lib/wsl/") and path not in found:
                found.append(path)
    return tuple(found)


def _dpkg_owners(paths: tuple[str, ...]) -> tuple[str, ...]:
    dpkg = shutil.which("dpkg")
    if not paths or dpkg is None:
        return ()
    # dpkg fails when any one file is unowned, and still names the owners of the others.
    return parse_dpkg_owners(_run([dpkg, "-S", *paths], any_status=True) or "")


def _container() -> str | None:
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    cgroup = _read("/proc/1/cgroup") or ""
    return "container" if any(word in cgroup for word in ("docker", "kubepods", "containerd", "lxc")) else None


def _pci_display_vendors() -> tuple[str, ...]:
    """Vendors of the display controllers (PCI class 0x03xxxx) the kernel sees; sysfs shows them in containers too."""
    vendors = []
    for device in sorted(glob.glob("/sys/bus/pci/devices/*")):
        if not (_read(f"{device}/class") or "").startswith("0x03"):
            continue
        vendor = _PCI_VENDORS.get((_read(f"{device}/vendor") or "").strip())
        if vendor:
            vendors.append(vendor)
    return tuple(vendors)


def _kfd() -> str | None:
    if not os.path.exists("/dev/kfd"):
        return None
    return "ok" if os.access("/dev/kfd", os.R_OK | os.W_OK) else "no access"


def _windows_video_controllers() -> tuple[str, ...]:
    powershell = shutil.which("powershell") or shutil.which("pwsh")
    if powershell is None:
        return ()
    script = "(Get-CimInstance Win32_VideoController).Name"
    out = _run([powershell, "-NoProfile", "-NonInteractive", "-Command", script]) or ""
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def _sysctl(name: str) -> str | None:
    sysctl = shutil.which("sysctl") or ("/usr/sbin/sysctl" if os.path.exists("/usr/sbin/sysctl") else None)
    if sysctl is None:
        return None
    out = _run([sysctl, "-n", name])
    return out.strip() if out else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _run(command: list[str], *, any_status: bool = False) -> str | None:
    """A probe's stdout, or None if it is missing, fails (unless `any_status`) or hangs."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 or any_status else None
