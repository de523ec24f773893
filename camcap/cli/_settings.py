"""Flags into `Settings`, the one configuration object every command passes down.

A flag left out falls back to its CAMCAP_* environment variable, then to the default (pydantic
settings does that part); a value pydantic refuses becomes a `CamcapError` that names both the
flag and the variable.
"""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from camcap.cli._alerts import ALERT_FLAGS
from camcap.config import Settings
from camcap.errors import CamcapError
from camcap.models.options import ModelOptions

# Flags that map one-to-one onto Settings fields (argparse dest == field name).
_SETTINGS_FLAGS = (
    "model", "device", "dtype", "max_new_tokens", "detail", "compile", "cache_dir", "host", "port", "open_browser",
    "change_threshold", "cut_stale", "max_batch", "batch_window_ms", "sources", "input_size", "max_inflight",
    "allow_image_urls", "source_ca_file",
)  # fmt: skip

# `serve`'s access and HTTPS flags, also Settings fields (docs/security.md).
_ACCESS_FLAGS = ("token", "loopback_token", "allow_origins", "allow_hosts", "https", "cert", "key")

# `serve --log FILE` (outputs/log.py).
_OUTPUT_FLAGS = ("log",)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the flags given; flags left out fall back to CAMCAP_* variables, then defaults."""
    names = (*_SETTINGS_FLAGS, *_ACCESS_FLAGS, *_OUTPUT_FLAGS, *ALERT_FLAGS)
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(part) for part in error['loc']).replace('_', '-')} "
            f"(or CAMCAP_{'_'.join(str(part) for part in error['loc']).upper()}): {error['msg']}"
            for error in exc.errors()
        )
        raise CamcapError(f"invalid setting {problems}.") from None
    prompts = getattr(args, "openai_prompts", None)
    if prompts:  # --openai-prompt TASK=TEMPLATE, each over the same task's CAMCAP_OPENAI_PROMPTS
        settings = settings.model_copy(update={"openai_prompts": {**settings.openai_prompts, **dict(prompts)}})
    return settings


def model_options(settings: Settings) -> ModelOptions:
    try:
        return settings.model_options()
    except ValueError as exc:
        raise CamcapError(str(exc)) from None
