from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from camcap import Settings, doctor
from camcap.doctor import (
    DoctorReport,
    DriverFacts,
    Finding,
    Folder,
    GpuInfo,
    PlatformFacts,
    SmiGpu,
    TorchFacts,
    _facts,
    _platform,
)
from camcap.models.store import ModelStatus, model_status

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="fake nvidia-smi is a shell script")

# Recorded facts: what these files and commands print on real machines.
PROC_VERSION_WSL1 = (
    "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) ) "
    "#1237-Microsoft Sat Sep 11 14:32:00 PST 2021\n"
)
PROC_VERSION_WSL2 = (
    "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc (GCC) 11.2.0, GNU ld (GNU Binutils) "
    "2.37) #1 SMP Tue Nov 5 00:21:55 UTC 2024\n"
)
PROC_VERSION_WSL2_OLD = (
    "Linux version 4.19.104-microsoft-standard (oe-user@oe-host) (gcc version 8.2.0 (GCC)) #1 SMP Wed Feb 19 "
    "06:37:35 UTC 2020\n"
)
PROC_VERSION_UBUNTU = (
    "Linux version 6.8.0-49-generic (buildd@lcy02-amd64-103) (x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) "
    "13.2.0, GNU ld (GNU Binutils for Ubuntu) 2.42) #49-Ubuntu SMP PREEMPT_DYNAMIC Mon Nov  4 02:06:24 UTC 2024\n"
)
SMI_HEADER_550 = """\
Thu Feb 29 10:12:01 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|=========================================+========================+======================|
|   0  NVIDIA L4                      Off |   00000000:00:03.0 Off |                    0 |
| N/A   34C    P8             12W /   72W |       1MiB /  23034MiB |      0%      Default |
+-----------------------------------------+------------------------+----------------------+
"""
# nvidia-smi inside WSL 2 reports the Windows driver (Windows numbering).
SMI_HEADER_WSL = "| NVIDIA-SMI 565.77.01              Driver Version: 566.36         CUDA Version: 12.7     |\n"
SMI_QUERY_TWO_GPUS = "570.86.15, NVIDIA GeForce RTX 4090, 24564, 23010, 97, Default, 8.9\n" + (
    "570.86.15, NVIDIA GeForce RTX 3060 Laptop GPU, [N/A], [N/A], [N/A], Default, 8.6\n"
)
DPKG_S_LIBCUDA = (
    "libnvidia-compute-550:amd64: /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
    "libnvidia-compute-550:amd64: /usr/lib/x86_64-linux-gnu/libcuda.so.550.120\n"
    "dpkg-query: no path found matching pattern /usr/lib64/libcuda.so\n"
)
WSL2 = PlatformFacts(wsl=2, wsl_distro="Ubuntu-24.04", wsl_libcuda=True, release="5.15.167.4-microsoft-standard-WSL2")
WINDOWS = PlatformFacts(system="Windows", machine="AMD64", release="11")
MAC_ARM = PlatformFacts(system="Darwin", machine="arm64", mac_version="14.5", apple_silicon=True)


def _report(**changes: object) -> DoctorReport:
    """A healthy CPU machine with the default model downloaded; tests change one fact at a time."""
    base = DoctorReport(
        python="3.11.7",
        platform="Linux",
        versions={"camcap": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0", "huggingface_hub": "2.4.0"},
        torch=TorchFacts(version="2.13.0+cpu"),
        driver=DriverFacts(),
        nvidia_gpu_present=False,
        cuda_visible_devices=None,
        device="cpu",
        dtype="float32",
        device_reason="no CUDA or MPS device is available to this torch build.",
        hf_hub_offline=False,
        folders=(Folder("Hugging Face cache", "/cache/hub", 100.0), Folder("camcap cache", "/cache/camcap", 100.0)),
        model_spec="moondream2",
        model=ModelStatus("moondream2", "Moondream 2", True, "/cache/hub/snap", 3_900_000_000, 3.7, "hub"),
    )
    return base.__class__(**{**base.__dict__, **changes})


def _messages(findings: list[Finding], level: str) -> str:
    """Every finding of one level, message and fix, as one text to search."""
    return "\n".join(f"{f.message} {f.fix or ''}" for f in findings if f.level == level)


def _coded(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


def test_report_has_the_fields_a_support_question_needs(tmp_path):
    report = doctor.collect_report(Settings(cache_dir=tmp_path))
    assert report.python.startswith(sys.version.split()[0])
    assert set(report.versions) == {"camcap", "torch", "transformers", "huggingface_hub"}
    assert report.torch.error is None and report.torch.version
    assert report.device and report.dtype and report.device_reason
    assert [folder.name for folder in report.folders] == ["Hugging Face cache", "camcap cache"]
    assert report.folders[1].path == str(tmp_path)
    assert report.folders[1].free_gb is not None
    assert report.hf_hub_offline is True  # conftest turns the hub off
    assert report.model_spec == "moondream2"
    assert report.findings
    # The JSON form carries the same facts, and the text form shows every section.
    data = json.loads(json.dumps(report.to_dict()))
    assert data["torch"]["version"] == report.torch.version
    assert {"cuda", "cudnn", "gpus", "mps", "arch_list"} <= set(data["torch"])
    assert {"version", "gpus"} <= set(data["driver"])
    assert data["os"]["system"] == platform.system()
    assert data["summary"]["torch_build"] == report.torch.build
    assert data["summary"]["device"] == report.device
    assert all({"level", "message", "fix", "code"} <= set(finding) for finding in data["findings"])
    text = doctor.render_report(report)
    for heading in ("Software", "System", "Hardware", "Model and caches", "Findings", "camcap would use"):
        assert heading in text


@pytest.mark.parametrize(("driver", "wheel"), [("550.54.14", "cu126"), ("580.65.06", "cu130"), (None, "cu126")])
def test_cpu_only_torch_on_a_machine_with_an_nvidia_gpu_is_diagnosed_with_the_fix(monkeypatch, tmp_path, driver, wheel):
    l4 = SmiGpu(0, "NVIDIA L4", 23034, 0, 0, "Default", "8.9")
    monkeypatch.setattr(_facts, "torch_facts", lambda: TorchFacts(version="2.13.0+cpu", cuda=None))
    monkeypatch.setattr(_facts, "driver_facts", lambda: DriverFacts(version=driver, gpus=(l4,)))
    monkeypatch.setattr(_facts, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(_facts, "platform_facts", lambda: PlatformFacts(dev_nvidia=("/dev/nvidia0",)))
    report = doctor.collect_report(Settings(cache_dir=tmp_path))
    [finding] = _coded(list(report.findings), "cpu-only-torch")
    assert finding.level == "problem"
    assert "An NVIDIA GPU is present (NVIDIA L4, 23034 MiB)" in finding.message
    assert "2.13.0+cpu is a CPU-only build" in finding.message
    assert (
        finding.fix
        == f"python -m pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/{wheel}"
    )
    text = doctor.render_report(report)
    assert "CPU-only build" in text
    assert f"fix: {finding.fix}" in text


def test_a_cpu_only_machine_without_nvidia_is_not_told_to_install_cuda():
    findings = doctor.diagnose(_report())
    assert not [f for f in findings if f.level in ("warning", "problem")]
    assert "pip install" not in "\n".join(f.message for f in findings)


def test_a_cuda_build_on_a_driver_too_old_for_it_says_which_driver_it_needs():
    report = _report(
        torch=TorchFacts(version="2.13.0+cu130", cuda="13.0"),
        driver=DriverFacts(version="550.54.14"),
        nvidia_gpu_present=True,
    )
    [finding] = _coded(doctor.diagnose(report), "torch-cuda-newer-than-driver")
    assert finding.level == "problem"
    assert "built for CUDA 13.0, newer than NVIDIA driver 550.54.14 runs" in finding.message
    assert "needs driver 580 or newer" in finding.message
    assert finding.fix is not None and finding.fix.endswith("whl/cu126")  # a build that driver can run


def test_a_cuda_build_without_any_nvidia_driver_is_explained():
    report = _report(torch=TorchFacts(version="2.13.0+cu126", cuda="12.6"))
    [finding] = _coded(doctor.diagnose(report), "no-nvidia-driver")
    assert finding.level == "warning"
    assert "built for CUDA 12.6, but no NVIDIA driver was found" in finding.message
    assert "525 or newer" in finding.message
    assert finding.fix is not None and finding.fix.endswith("--index-url https://download.pytorch.org/whl/cpu")


def test_cuda_visible_devices_hiding_every_gpu_is_named():
    report = _report(
        torch=TorchFacts(version="2.13.0+cu126", cuda="12.6"),
        driver=DriverFacts(version="570.86.15"),
        nvidia_gpu_present=True,
        cuda_visible_devices="",
    )
    assert "CUDA_VISIBLE_DEVICES='' hides every GPU" in _messages(doctor.diagnose(report), "problem")


def test_a_gpu_newer_than_the_torch_build_is_diagnosed():
    gpu = GpuInfo(0, "NVIDIA RTX PRO 6000", 95.0, "12.0", supported=False)
    report = _report(
        torch=TorchFacts(
            version="2.5.0+cu124", cuda="12.4", cuda_available=True, arch_list=("sm_80", "sm_90"), gpus=(gpu,)
        ),
        driver=DriverFacts(version="580.65.06"),
        device="cuda:0",
    )
    assert "no kernel image is available" in _messages(doctor.diagnose(report), "problem")


@pytest.mark.parametrize(
    ("capability", "arch_list", "supported"),
    [
        ((8, 9), ("sm_80", "sm_86"), True),  # same major, older minor: binary compatible
        ((12, 0), ("sm_80", "sm_90"), False),
        ((12, 0), ("sm_80", "compute_90"), True),  # PTX is compiled just in time
        ((9, 0), ("sm_90a",), True),
        ((7, 0), ("sm_75", "sm_80"), False),
    ],
)
def test_gpu_architecture_support(capability, arch_list, supported):
    assert _facts._arch_supported(*capability, arch_list) is supported


def test_the_model_missing_while_offline_points_at_camcap_pull():
    model = ModelStatus("moondream2", "Moondream 2", False, None, None, 3.7, "hub")
    problems = _messages(doctor.diagnose(_report(model=model, hf_hub_offline=True)), "problem")
    assert "HF_HUB_OFFLINE is set" in problems
    assert "`camcap pull moondream2`" in problems


def test_too_little_disk_for_the_default_model_is_a_problem():
    model = ModelStatus("moondream2", "Moondream 2", False, None, None, 3.7, "hub")
    folders = (Folder("Hugging Face cache", "/small/hub", 1.5), Folder("camcap cache", "/small/camcap", 1.5))
    problems = _messages(doctor.diagnose(_report(model=model, folders=folders)), "problem")
    assert "Only 1.5 GB is free in /small/hub" in problems
    assert "CAMCAP_CACHE_DIR" in problems


def test_a_missing_torch_is_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    report = doctor.collect_report(Settings(cache_dir=tmp_path))
    assert report.torch.error is not None and report.device is None
    assert "torch cannot be imported" in _messages(list(report.findings), "problem")
    assert "not importable" in doctor.render_report(report)


@pytest.mark.parametrize(("nvidia", "command"), [(False, "whl/cpu"), (True, "whl/cu126")])
def test_the_torch_install_command_fits_the_machine(nvidia, command):
    report = _report(torch=TorchFacts(error="ImportError: no torch"), device=None, nvidia_gpu_present=nvidia)
    assert command in _messages(doctor.diagnose(report), "problem")


def test_no_nvidia_smi_and_no_driver_is_a_fact_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert doctor.driver_facts().gpus == ()
    report = doctor.collect_report(Settings(cache_dir=tmp_path))
    assert "NVIDIA driver" in doctor.render_report(report)


def _fake_nvidia_smi(folder: Path, output: str, status: int, header: str = "") -> str:
    """An nvidia-smi that answers --query-gpu with `output` and a plain call with `header`."""
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --query-gpu=*) echo {shlex.quote(output)}; exit {status};; esac\n'
        f"echo {shlex.quote(header)}\n"
    )
    script.chmod(0o755)
    return str(script)


@POSIX_ONLY
def test_nvidia_smi_output_is_parsed(monkeypatch, tmp_path):
    smi = _fake_nvidia_smi(tmp_path, "550.54.14, NVIDIA L4, 23034, 512, 3, Default, 8.9", 0, SMI_HEADER_550)
    monkeypatch.setattr(shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    facts = doctor.driver_facts()
    if not Path("/proc/driver/nvidia/version").exists():
        assert facts.version == "550.54.14"
    assert facts.cuda_version == "12.4"
    assert facts.smi_path == smi
    assert facts.gpus == (SmiGpu(0, "NVIDIA L4", 23034, 512, 3, "Default", "8.9"),)


@POSIX_ONLY
def test_a_failing_nvidia_smi_is_reported(monkeypatch, tmp_path):
    smi = _fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 9)
    monkeypatch.setattr(shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    assert "couldn't communicate with the NVIDIA driver" in (doctor.driver_facts().smi_error or "")


def test_driver_version_is_read_from_proc_text():
    proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
    open_module = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs@U16)\n"
    assert doctor.parse_driver_version(proprietary) == "550.54.14"
    assert doctor.parse_driver_version(open_module) == "570.86.15"
    assert doctor.parse_driver_version("") is None


def test_cudnn_versions_are_decoded():
    assert _facts._cudnn_version(90102) == "9.1.2"
    assert _facts._cudnn_version(8907) == "8.9.7"
    assert _facts._cudnn_version(None) is None


def test_camcap_doctor_runs_as_a_command(subprocess_env, tmp_path):
    env = {**subprocess_env, "CAMCAP_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "camcap", "doctor", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["folders"][1]["path"] == str(tmp_path)
    assert data["findings"]
    assert {"system", "wsl", "torch_build", "device", "problems"} == set(data["summary"])
    assert "Traceback" not in done.stderr


def _cache_snapshot(hub: Path, repo_id: str, ref: str, commit: str) -> None:
    """Lay out a Hub cache entry the way huggingface_hub does (blob + snapshot symlink + ref)."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(repo / "blobs" / "abc")
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(commit)


@POSIX_ONLY
def test_the_default_model_counts_as_downloaded_only_with_every_snapshot_it_needs(tmp_path):
    from camcap.models import moondream
    from camcap.models.options import ModelOptions

    options = ModelOptions(cache_dir=tmp_path)
    weights, tokenizer = moondream.required_downloads()
    _cache_snapshot(tmp_path / "hub", weights.repo_id, weights.revision or "main", "1" * 40)
    assert model_status("moondream2", options).available is False
    _cache_snapshot(tmp_path / "hub", tokenizer.repo_id, tokenizer.revision or "main", "2" * 40)
    status = model_status("moondream2", options)
    assert status.available is True
    assert status.path == str(tmp_path / "hub" / "models--vikhyatk--moondream2" / "snapshots" / ("1" * 40))
    assert model_status("moondream2@other-tag", options).available is False


# --- recorded facts, parsed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proc_version", "wsl"),
    [
        (PROC_VERSION_WSL1, 1),
        (PROC_VERSION_WSL2, 2),
        (PROC_VERSION_WSL2_OLD, 2),
        (PROC_VERSION_UBUNTU, None),
        ("", None),
    ],
)
def test_wsl_version_is_read_from_proc_version(proc_version, wsl):
    assert doctor.parse_wsl_version(proc_version) == wsl


def test_nvidia_smi_header_gives_the_drivers_cuda_version():
    assert doctor.parse_smi_cuda_version(SMI_HEADER_550) == "12.4"
    assert doctor.parse_smi_cuda_version(SMI_HEADER_WSL) == "12.7"
    assert (
        doctor.parse_smi_cuda_version("CUDA Version                              : 13.0\n") == "13.0"
    )  # nvidia-smi -q
    assert doctor.parse_smi_cuda_version("") is None


def test_nvidia_smi_query_rows_become_gpus_with_unknowns_left_empty():
    version, gpus = doctor.parse_smi_query(SMI_QUERY_TWO_GPUS)
    assert version == "570.86.15"
    assert gpus[0] == SmiGpu(0, "NVIDIA GeForce RTX 4090", 24564, 23010, 97, "Default", "8.9")
    assert gpus[1] == SmiGpu(1, "NVIDIA GeForce RTX 3060 Laptop GPU", None, None, None, "Default", "8.6")


def test_dpkg_names_the_packages_of_a_linux_driver():
    assert _platform.parse_dpkg_owners(DPKG_S_LIBCUDA) == ("libnvidia-compute-550:amd64",)


@pytest.mark.parametrize(
    ("version", "cuda", "hip", "build"),
    [
        ("2.5.1+cu124", "12.4", None, "cu124"),
        ("2.13.0+cpu", None, None, "cpu"),
        ("2.13.0", "13.0", None, "cu130"),  # PyPI's Linux build carries no label
        ("2.13.0", None, None, "cpu"),  # PyPI's macOS and Windows builds
        ("2.13.0+rocm7.2", None, "7.2.26015", "rocm7.2"),
        ("2.6.0", None, "6.2.41133", "rocm6.2"),
    ],
)
def test_torch_build_is_named_like_pytorchs_wheel_indexes(version, cuda, hip, build):
    assert TorchFacts(version=version, cuda=cuda, hip=hip).build == build


def test_the_wheel_table_is_consistent():
    for wheels in doctor.CUDA_WHEELS:
        assert wheels.index == "cu" + wheels.cuda.replace(".", "")
        assert int(wheels.cuda.split(".")[0]) in doctor.MIN_DRIVER_FOR_CUDA
    assert sorted(doctor.MIN_DRIVER_FOR_CUDA) == [11, 12, 13]


# --- one test per finding ------------------------------------------------------------------


def test_wsl1_has_no_gpu_and_the_fix_converts_the_distro():
    [finding] = _coded(doctor.diagnose(_report(os=PlatformFacts(wsl=1, wsl_distro="Ubuntu"))), "wsl1")
    assert finding.level == "warning"
    assert "WSL 1" in finding.message
    assert finding.fix is not None and "wsl --set-version Ubuntu 2" in finding.fix


def test_wsl2_without_the_windows_drivers_libcuda_points_at_the_windows_driver():
    report = _report(torch=TorchFacts(version="2.13.0", cuda="13.0"), os=replace(WSL2, wsl_libcuda=False))
    [finding] = _coded(doctor.diagnose(report), "wsl-no-windows-driver")
    assert "/usr/lib/wsl/lib/libcuda.so" in finding.message
    assert finding.fix is not None and "in Windows" in finding.fix and "wsl --shutdown" in finding.fix
    # The generic "no driver found" warning would only repeat it.
    assert not _coded(doctor.diagnose(report), "no-nvidia-driver")


def test_a_linux_nvidia_driver_inside_wsl_is_named_with_the_package_to_remove():
    facts = replace(
        WSL2,
        linux_libcuda=("/usr/lib/x86_64-linux-gnu/libcuda.so.1",),
        linux_driver_packages=_platform.parse_dpkg_owners(DPKG_S_LIBCUDA),
    )
    [finding] = _coded(doctor.diagnose(_report(os=facts)), "wsl-linux-driver")
    assert finding.level == "problem"
    assert "/usr/lib/x86_64-linux-gnu/libcuda.so.1" in finding.message
    assert (
        finding.fix
        == "sudo apt-get remove --purge libnvidia-compute-550:amd64, then in Windows PowerShell: wsl --shutdown"
    )


def test_wsl2_with_the_windows_driver_and_a_matching_torch_is_healthy():
    gpu = GpuInfo(0, "NVIDIA GeForce RTX 4070", 12.0, "8.9", supported=True)
    report = _report(
        os=WSL2,
        torch=TorchFacts(version="2.13.0+cu126", cuda="12.6", cuda_available=True, gpus=(gpu,)),
        driver=DriverFacts(version="566.36", cuda_version="12.7", smi_path="/usr/lib/wsl/lib/nvidia-smi"),
        device="cuda:0",
    )
    findings = doctor.diagnose(report)
    assert [f.code for f in findings] == ["ok"]
    assert "WSL 2 (Ubuntu-24.04 on Windows)" in doctor.render_report(dataclasses.replace(report, findings=()))


def test_windows_with_an_nvidia_gpu_but_no_driver_says_where_to_get_it():
    report = _report(os=replace(WINDOWS, video_controllers=("NVIDIA GeForce RTX 3060", "Intel(R) UHD Graphics 630")))
    [finding] = _coded(doctor.diagnose(report), "no-nvidia-driver")
    assert "NVIDIA GeForce RTX 3060" in finding.message and "nvidia-smi.exe" in finding.message
    assert finding.fix is not None and "nvidia.com" in finding.fix


@pytest.mark.parametrize(("driver", "wheel"), [("566.36", "cu126"), ("581.57", "cu130")])
def test_windows_pypi_torch_next_to_an_nvidia_driver_gets_the_cuda_build_for_that_driver(driver, wheel):
    gpu = SmiGpu(0, "NVIDIA GeForce RTX 3060", 12288, 800, 4, "Default", "8.6")
    report = _report(
        os=replace(WINDOWS, video_controllers=("NVIDIA GeForce RTX 3060",)),
        torch=TorchFacts(version="2.13.0+cpu"),
        driver=DriverFacts(version=driver, gpus=(gpu,), smi_path="C:\\Windows\\system32\\nvidia-smi.exe"),
    )
    [finding] = _coded(doctor.diagnose(report), "cpu-only-torch")
    assert "on Windows, PyPI's `pip install torch` is always that build" in finding.message
    assert (
        finding.fix
        == f"python -m pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/{wheel}"
    )


def test_cuda_visible_devices_hiding_every_gpu_names_the_shells_unset_command():
    report = _report(
        os=WINDOWS,
        torch=TorchFacts(version="2.13.0+cu130", cuda="13.0"),
        driver=DriverFacts(version="581.57", gpus=(SmiGpu(0, "NVIDIA GeForce RTX 4070"),)),
        cuda_visible_devices="1",  # one GPU: index 1 does not exist
    )
    [finding] = _coded(doctor.diagnose(report), "cuda-visible-devices")
    assert finding.fix is not None and finding.fix.startswith("Remove-Item Env:CUDA_VISIBLE_DEVICES")
    assert (
        _coded(doctor.diagnose(replace(report, cuda_visible_devices="-1", os=PlatformFacts())), "cuda-visible-devices")[
            0
        ].fix
        == "unset CUDA_VISIBLE_DEVICES"
    )
    assert not _coded(doctor.diagnose(replace(report, cuda_visible_devices="0")), "cuda-visible-devices")


def test_an_x86_python_under_rosetta_on_apple_silicon_is_told_to_use_an_arm64_python():
    report = _report(os=replace(MAC_ARM, machine="x86_64", rosetta=True), torch=TorchFacts(version="2.2.2"))
    [finding] = _coded(doctor.diagnose(report), "rosetta")
    assert finding.level == "problem" and "Rosetta" in finding.message
    assert finding.fix is not None and "arch -arm64 python3 -m venv .venv" in finding.fix
    assert "under Rosetta 2" in doctor.render_report(report)


def test_apple_silicon_with_mps_is_healthy():
    report = _report(os=MAC_ARM, torch=TorchFacts(version="2.13.0", mps=True, mps_built=True), device="mps")
    assert [f.code for f in doctor.diagnose(report)] == ["ok"]


@pytest.mark.parametrize(
    ("mac_version", "mps_built", "expected"),
    [("12.1", True, "macOS 12.3 or newer"), ("14.5", False, "built without Apple's GPU backend")],
)
def test_apple_silicon_without_mps_says_why(mac_version, mps_built, expected):
    report = _report(
        os=replace(MAC_ARM, mac_version=mac_version), torch=TorchFacts(version="2.13.0", mps_built=mps_built)
    )
    [finding] = _coded(doctor.diagnose(report), "no-mps")
    assert expected in finding.message and finding.fix


def test_an_intel_mac_is_told_it_runs_on_the_cpu():
    report = _report(os=PlatformFacts(system="Darwin", machine="x86_64", mac_version="13.6"))
    [finding] = _coded(doctor.diagnose(report), "intel-mac")
    assert finding.level == "note"


def test_a_container_started_without_the_gpu_is_told_to_pass_it():
    report = _report(
        os=PlatformFacts(container="docker", pci_gpus=("nvidia",)),
        torch=TorchFacts(version="2.13.0", cuda="13.0"),
        nvidia_gpu_present=True,
        driver=DriverFacts(version="580.65.06"),
    )
    findings = doctor.diagnose(report)
    [finding] = _coded(findings, "container-without-gpu")
    assert finding.level == "problem"
    assert finding.fix is not None and "docker run --gpus all" in finding.fix
    assert not _coded(findings, "cuda-unusable")  # the container finding already says why
    # Once torch reaches the GPU, device files created later (by nvidia-modprobe) are no problem.
    working = replace(report, torch=TorchFacts(version="2.13.0", cuda="13.0", cuda_available=True), device="cuda:0")
    assert not _coded(doctor.diagnose(working), "container-without-gpu")


def test_a_linux_gpu_without_a_driver_is_told_to_install_one():
    report = _report(os=PlatformFacts(pci_gpus=("intel", "nvidia")))
    [finding] = _coded(doctor.diagnose(report), "no-nvidia-driver")
    assert finding.fix is not None and "ubuntu-drivers install" in finding.fix


def test_a_torch_built_for_an_older_minor_cuda_than_torchs_is_a_note_not_a_problem():
    gpu = GpuInfo(0, "NVIDIA L4", 22.0, "8.9", supported=True)
    report = _report(
        torch=TorchFacts(version="2.5.1+cu124", cuda="12.4", cuda_available=True, gpus=(gpu,)),
        driver=DriverFacts(version="535.183.01", cuda_version="12.2"),
        nvidia_gpu_present=True,
        os=PlatformFacts(dev_nvidia=("/dev/nvidia0",)),
        device="cuda:0",
    )
    [finding] = _coded(doctor.diagnose(report), "torch-cuda-newer-minor")
    assert finding.level == "note"
    assert "minor version compatibility" in finding.message
    assert finding.fix is not None and finding.fix.endswith("whl/cu126")


def test_a_cuda_13_torch_on_a_cuda_12_driver_compares_the_drivers_cuda_version():
    report = _report(
        torch=TorchFacts(version="2.13.0", cuda="13.0"),
        driver=DriverFacts(version="570.86.15", cuda_version="12.8"),
        nvidia_gpu_present=True,
        os=PlatformFacts(dev_nvidia=("/dev/nvidia0",)),
    )
    [finding] = _coded(doctor.diagnose(report), "torch-cuda-newer-than-driver")
    assert "which supports CUDA up to 12.8" in finding.message
    assert finding.fix is not None and finding.fix.endswith("whl/cu126")


@pytest.mark.parametrize(
    ("os_facts", "fix_part"),
    [(PlatformFacts(), "whl/cu129"), (WINDOWS, "Update the NVIDIA driver to 580 or newer")],
)
def test_a_blackwell_gpu_on_a_cuda_12_driver_gets_a_build_with_its_kernels(os_facts, fix_part):
    gpu = SmiGpu(0, "NVIDIA GeForce RTX 5090", 32607, 0, 0, "Default", "12.0")
    report = _report(
        os=replace(os_facts, dev_nvidia=("/dev/nvidia0",)),
        torch=TorchFacts(version="2.13.0+cpu"),
        driver=DriverFacts(version="575.57.08", gpus=(gpu,)),
    )
    [finding] = _coded(doctor.diagnose(report), "cpu-only-torch")
    assert finding.fix is not None and fix_part in finding.fix


@pytest.mark.parametrize(("kfd", "fix_part"), [(None, "AMD's GPU driver"), ("no access", "usermod -aG render,video")])
def test_a_rocm_torch_without_a_usable_amd_gpu_says_why(kfd, fix_part):
    report = _report(torch=TorchFacts(version="2.13.0+rocm7.2", hip="7.2.26015"), os=PlatformFacts(kfd=kfd))
    [finding] = _coded(doctor.diagnose(report), "rocm-unusable")
    assert finding.level == "problem" and "ROCm build" in finding.message
    assert finding.fix is not None and fix_part in finding.fix
    assert "rocm7.2: ROCm 7.2.26015" in doctor.render_report(report)


def test_an_amd_gpu_next_to_a_non_rocm_torch_is_pointed_at_the_rocm_build():
    report = _report(os=PlatformFacts(pci_gpus=("amd",), kfd="ok"))
    [finding] = _coded(doctor.diagnose(report), "amd-gpu-without-rocm")
    assert (
        finding.fix
        == "python -m pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/rocm7.2"
    )


def test_a_gpu_too_full_for_the_model_is_a_warning():
    busy = SmiGpu(0, "NVIDIA GeForce RTX 3050", 4096, 3500, 20, "Default", "8.6")
    report = _report(driver=DriverFacts(version="570.86.15", gpus=(busy,)), nvidia_gpu_present=True)
    [finding] = _coded(doctor.diagnose(report), "gpu-out-of-memory")
    assert finding.level == "warning"
    assert "moondream2 needs about 4.7 GB" in finding.message and "0.6 GB free" in finding.message
    roomy = replace(busy, memory_total_mib=24564)
    assert not _coded(doctor.diagnose(replace(report, driver=DriverFacts(gpus=(roomy,)))), "gpu-out-of-memory")


@pytest.mark.parametrize(
    ("gpu", "level", "fix_part"),
    [
        (SmiGpu(0, "NVIDIA A100", 81920, 0, 0, "Prohibited"), "problem", "nvidia-smi -i 0 -c DEFAULT"),
        (SmiGpu(0, "NVIDIA A100", 81920, 40000, 100, "Exclusive_Process"), "warning", "nvidia-smi -i 0 -c DEFAULT"),
        (SmiGpu(0, "NVIDIA A100", 81920, 9000, 98, "Default"), "note", "Processes"),
    ],
)
def test_a_gpu_held_by_other_programs_is_named(gpu, level, fix_part):
    [finding] = _coded(doctor.diagnose(_report(driver=DriverFacts(gpus=(gpu,)))), "gpu-busy")
    assert finding.level == level
    assert finding.fix is not None and fix_part in finding.fix


def test_every_problem_and_warning_names_a_fix_and_a_code():
    scenarios = [
        _report(os=PlatformFacts(wsl=1)),
        _report(os=replace(WSL2, wsl_libcuda=False, linux_libcuda=("/usr/lib64/libcuda.so",))),
        _report(os=replace(WINDOWS, video_controllers=("NVIDIA RTX A2000",))),
        _report(os=replace(MAC_ARM, rosetta=True)),
        _report(os=replace(MAC_ARM, mac_version="11.7")),
        _report(os=PlatformFacts(container="podman", pci_gpus=("nvidia",))),
        _report(torch=TorchFacts(version="2.13.0+cpu"), driver=DriverFacts(version="550.54.14")),
        _report(torch=TorchFacts(version="2.13.0", cuda="13.0"), driver=DriverFacts(version="550.54.14")),
        _report(torch=TorchFacts(version="2.13.0+rocm7.2", hip="7.2")),
        _report(torch=TorchFacts(version="2.13.0", cuda="13.0"), cuda_visible_devices=""),
        _report(driver=DriverFacts(gpus=(SmiGpu(0, "T4", 15360, 15000, 100, "Exclusive_Process"),))),
        _report(torch=TorchFacts(error="ImportError: no torch"), device=None),
        _report(device=None, device_reason="--device mps was requested, but ..."),
        _report(os=WINDOWS, torch=TorchFacts(version="2.13.0+cu130", cuda="13.0")),
    ]
    for report in scenarios:
        serious = [f for f in doctor.diagnose(report) if f.level in ("problem", "warning")]
        assert serious, report
        for finding in serious:
            assert finding.fix and finding.code, finding


def test_doctor_json_carries_platform_wsl_torch_build_device_and_fixes():
    report = _report(os=PlatformFacts(wsl=1, wsl_distro="Debian"), torch=TorchFacts(version="2.5.1+cu124", cuda="12.4"))
    report = replace(report, findings=tuple(doctor.diagnose(report)))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"] == {"system": "Linux", "wsl": 1, "torch_build": "cu124", "device": "cpu", "problems": 0}
    assert data["os"]["wsl_distro"] == "Debian"
    wsl1 = next(f for f in data["findings"] if f["code"] == "wsl1")
    assert wsl1["fix"].startswith("In Windows PowerShell: wsl --set-version Debian 2")


# --- gathering the facts, with recorded outputs standing in for the real files and commands ----------


def _fake_command(folder: Path, name: str, script: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_platform_facts_never_raise_here():
    facts = doctor.platform_facts()
    assert facts.system == platform.system()
    assert facts.machine == platform.machine()
    if facts.system == "Linux":
        assert facts.wsl == doctor.parse_wsl_version(Path("/proc/version").read_text())


@POSIX_ONLY
def test_inside_wsl2_a_linux_drivers_libcuda_and_its_package_are_found(monkeypatch, tmp_path):
    dpkg = _fake_command(tmp_path, "dpkg", f"printf %s {shlex.quote(DPKG_S_LIBCUDA)}\nexit 1\n")
    files = {"/proc/version": PROC_VERSION_WSL2}
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(_platform, "_read", files.get)
    monkeypatch.setattr(_platform, "_linux_libcuda", lambda: ("/usr/lib/x86_64-linux-gnu/libcuda.so.1",))
    monkeypatch.setattr(shutil, "which", lambda name: dpkg if name == "dpkg" else None)
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu-24.04")
    facts = doctor.platform_facts()
    assert (facts.wsl, facts.wsl_distro) == (2, "Ubuntu-24.04")
    assert facts.linux_driver_packages == ("libnvidia-compute-550:amd64",)  # dpkg fails for one file, names the rest


@POSIX_ONLY
@pytest.mark.parametrize(("translated", "rosetta"), [("1", True), ("0", False)])
def test_on_macos_rosetta_is_read_from_sysctl(monkeypatch, tmp_path, translated, rosetta):
    # sysctl -n sysctl.proc_translated prints 1 for a translated (x86_64) process on Apple silicon.
    answers = f'case "$2" in hw.optional.arm64) echo 1;; sysctl.proc_translated) echo {translated};; esac\n'
    sysctl = _fake_command(tmp_path, "sysctl", answers)
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "mac_ver", lambda: ("14.5", ("", "", ""), "x86_64"))
    monkeypatch.setattr(shutil, "which", lambda name: sysctl if name == "sysctl" else None)
    facts = doctor.platform_facts()
    assert (facts.system, facts.mac_version, facts.apple_silicon, facts.rosetta) == ("Darwin", "14.5", True, rosetta)


@POSIX_ONLY
def test_on_windows_the_display_adapters_come_from_powershell(monkeypatch, tmp_path):
    adapters = "printf 'NVIDIA GeForce RTX 3060\\r\\nIntel(R) UHD Graphics\\r\\n'\n"
    powershell = _fake_command(tmp_path, "powershell", adapters)
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    monkeypatch.setattr(shutil, "which", lambda name: powershell if name == "powershell" else None)
    assert doctor.platform_facts().video_controllers == ("NVIDIA GeForce RTX 3060", "Intel(R) UHD Graphics")


@POSIX_ONLY
def test_an_nvidia_smi_without_compute_cap_is_asked_again_without_it(monkeypatch, tmp_path):
    # Drivers before 510 reject the field: 'Field "compute_cap" is not a valid field to query.'
    script = (
        'case "$1" in\n'
        "  *compute_cap*) echo 'Field \"compute_cap\" is not a valid field to query.'; exit 2;;\n"
        "  --query-gpu=*) echo '470.256.02, Tesla T4, 15360, 0, 0, Default'; exit 0;;\n"
        "esac\n"
        "echo '| NVIDIA-SMI 470.256.02   Driver Version: 470.256.02   CUDA Version: 11.4     |'\n"
    )
    smi = _fake_command(tmp_path, "nvidia-smi", script)
    monkeypatch.setattr(shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    facts = doctor.driver_facts()
    assert facts.cuda_version == "11.4"
    assert facts.gpus == (SmiGpu(0, "Tesla T4", 15360, 0, 0, "Default", None),)
    report = _report(torch=TorchFacts(version="2.13.0", cuda="13.0"), driver=facts, nvidia_gpu_present=True)
    [finding] = _coded(doctor.diagnose(report), "torch-cuda-newer-than-driver")
    assert finding.fix is not None and finding.fix.startswith("Update the NVIDIA driver to 580 or newer")


def test_a_loaded_driver_without_device_files_is_named():
    report = _report(driver=DriverFacts(version="550.54.14"), nvidia_gpu_present=True, os=PlatformFacts())
    [finding] = _coded(doctor.diagnose(report), "no-nvidia-device")
    assert "no /dev/nvidia0" in finding.message
    assert finding.fix == "sudo nvidia-modprobe -c 0 -u, or reboot"


def test_a_cuda_torch_that_sees_no_gpu_for_another_reason_quotes_nvidia_smi():
    smi_error = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    report = _report(
        torch=TorchFacts(version="2.13.0", cuda="13.0"),
        driver=DriverFacts(version="580.65.06", smi_path="/usr/bin/nvidia-smi", smi_error=smi_error),
        nvidia_gpu_present=True,
        os=PlatformFacts(dev_nvidia=("/dev/nvidia0", "/dev/nvidiactl")),
    )
    [finding] = _coded(doctor.diagnose(report), "cuda-unusable")
    assert smi_error in finding.message
    assert finding.fix is not None and "reboot" in finding.fix


def test_a_device_that_cannot_be_used_is_a_problem_with_a_fix():
    report = _report(device=None, device_reason="--device mps was requested, but this torch build has no MPS support.")
    [finding] = _coded(doctor.diagnose(report), "device-unusable")
    assert finding.level == "problem" and "--device mps was requested" in finding.message
    assert finding.fix is not None and "--device cpu" in finding.fix
