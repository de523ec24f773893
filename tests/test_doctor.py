from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camcap import Settings, doctor
from camcap.doctor import DoctorReport, DriverFacts, Finding, Folder, GpuInfo, TorchFacts, _facts
from camcap.models.store import ModelStatus, model_status

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="fake nvidia-smi is a shell script")


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
    return "\n".join(f.message for f in findings if f.level == level)


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
    text = doctor.render_report(report)
    for heading in ("Software", "Hardware", "Model and caches", "Findings", "camcap would use", "HF_HUB_OFFLINE"):
        assert heading in text


@pytest.mark.parametrize(("driver", "wheel"), [("550.54.14", "cu128"), ("580.65.06", "cu130"), (None, "cu128")])
def test_cpu_only_torch_on_a_machine_with_an_nvidia_gpu_is_diagnosed_with_the_fix(monkeypatch, tmp_path, driver, wheel):
    monkeypatch.setattr(_facts, "torch_facts", lambda: TorchFacts(version="2.13.0+cpu", cuda=None))
    monkeypatch.setattr(_facts, "driver_facts", lambda: DriverFacts(version=driver, gpus=("NVIDIA L4, 23034 MiB",)))
    monkeypatch.setattr(_facts, "nvidia_gpu_present", lambda: True)
    report = doctor.collect_report(Settings(cache_dir=tmp_path))
    problems = _messages(list(report.findings), "problem")
    assert "An NVIDIA GPU is present (NVIDIA L4, 23034 MiB)" in problems
    assert "2.13.0+cpu is a CPU-only build" in problems
    assert f"pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/{wheel}" in problems
    assert "CPU-only build" in doctor.render_report(report)


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
    problems = _messages(doctor.diagnose(report), "problem")
    assert "NVIDIA driver 550.54.14 is too old for torch's CUDA 13.0 (needs 580 or newer)" in problems
    assert "whl/cu128" in problems  # a build that driver can run


def test_a_cuda_build_without_any_nvidia_driver_is_explained():
    report = _report(torch=TorchFacts(version="2.13.0+cu126", cuda="12.6"))
    warnings = _messages(doctor.diagnose(report), "warning")
    assert "built for CUDA 12.6, but no NVIDIA driver was found" in warnings
    assert "525 or newer" in warnings


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


@pytest.mark.parametrize(("nvidia", "command"), [(False, "whl/cpu"), (True, "whl/cu128")])
def test_the_torch_install_command_fits_the_machine(nvidia, command):
    report = _report(torch=TorchFacts(error="ImportError: no torch"), device=None, nvidia_gpu_present=nvidia)
    assert command in _messages(doctor.diagnose(report), "problem")


def test_no_nvidia_smi_and_no_driver_is_a_fact_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert doctor.driver_facts().gpus == ()
    report = doctor.collect_report(Settings(cache_dir=tmp_path))
    assert "NVIDIA driver" in doctor.render_report(report)


def _fake_nvidia_smi(folder: Path, output: str, status: int) -> str:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho {shlex.quote(output)}\nexit {status}\n")
    script.chmod(0o755)
    return str(script)


@POSIX_ONLY
def test_nvidia_smi_output_is_parsed(monkeypatch, tmp_path):
    smi = _fake_nvidia_smi(tmp_path, "550.54.14, NVIDIA L4, 23034 MiB", 0)
    monkeypatch.setattr(shutil, "which", lambda name: smi if name == "nvidia-smi" else None)
    facts = doctor.driver_facts()
    if not Path("/proc/driver/nvidia/version").exists():
        assert facts.version == "550.54.14"
    assert facts.gpus == ("NVIDIA L4, 23034 MiB",)


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
