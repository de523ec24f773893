from __future__ import annotations

import pytest

from camcap import DeviceError
from camcap.models import device as device_module
from camcap.models.device import choose_device


def test_auto_on_a_machine_without_accelerators_picks_cpu_float32_and_says_why(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    choice = choose_device()
    assert (choice.device, choice.dtype) == ("cpu", "float32")
    assert "no CUDA or MPS" in choice.reason


def test_cpu_only_torch_on_a_machine_with_an_nvidia_gpu_is_diagnosed(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(device_module, "nvidia_gpu_present", lambda: True)
    reason = choose_device().reason
    assert "CPU-only build" in reason
    assert "pip install" in reason


def test_requesting_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"--device cuda was requested, but torch sees no CUDA GPU"):
        choose_device("cuda")


@pytest.mark.parametrize(
    ("device", "dtype", "message"), [("tpu", "auto", "Unknown device"), ("cpu", "int3", "Unknown dtype")]
)
def test_unknown_device_or_dtype_lists_the_choices(device, dtype, message):
    with pytest.raises(DeviceError, match=message):
        choose_device(device, dtype)


def test_explicit_cpu_and_dtype_are_kept():
    choice = choose_device("cpu", "bfloat16")
    assert (choice.device, choice.dtype) == ("cpu", "bfloat16")
