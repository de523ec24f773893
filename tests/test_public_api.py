"""The public surface is what `camcap/__init__.py` exports; changing it is a decision, not an accident."""

from __future__ import annotations

import camcap


def test_exported_members_are_the_documented_public_api():
    assert sorted(camcap.__all__) == sorted(
        [
            "DEFAULT_SPEC",
            "AccessConfigError",
            "Box",
            "CamcapError",
            "Caption",
            "Captioner",
            "DeviceError",
            "InvalidImageError",
            "ModelInfo",
            "ModelNotAvailableError",
            "ModelOptions",
            "Point",
            "Settings",
            "Task",
            "TaskKind",
            "Timings",
            "Token",
            "UnknownModelSpecError",
            "UnsupportedTaskError",
            "__version__",
            "create_captioner",
        ]
    )
    for name in camcap.__all__:
        assert hasattr(camcap, name), name


def test_user_errors_share_one_base_class_with_an_exit_code():
    for error in (
        camcap.UnknownModelSpecError,
        camcap.ModelNotAvailableError,
        camcap.UnsupportedTaskError,
        camcap.InvalidImageError,
        camcap.DeviceError,
        camcap.AccessConfigError,
    ):
        assert issubclass(error, camcap.CamcapError)
        assert error.exit_code != 0


def test_importing_camcap_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, camcap; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
