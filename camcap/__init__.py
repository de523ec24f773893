"""camcap: live, private, local captions for any camera."""

from __future__ import annotations

from camcap.config import Settings
from camcap.errors import (
    AccessConfigError,
    CamcapError,
    DeviceError,
    InvalidImageError,
    ModelNotAvailableError,
    UnknownModelSpecError,
    UnsupportedTaskError,
)
from camcap.models.base import Box, Caption, Captioner, ModelInfo, Point, Task, TaskKind, Timings, Token
from camcap.models.options import ModelOptions
from camcap.models.registry import DEFAULT_SPEC, create_captioner

__version__ = "0.1.0"

__all__ = [
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
