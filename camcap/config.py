"""One `Settings` object for the whole process, built by the CLI and passed down.

Values come from (highest first) command-line flags, environment variables prefixed `CAMCAP_`
(e.g. `CAMCAP_MODEL=random:blip-tiny`), then the defaults below. No module reads the
environment at import time; `Settings()` reads it when the CLI builds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from camcap.models.options import ModelOptions


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMCAP_", extra="ignore")

    # --- model -------------------------------------------------------------------------------
    model: str = Field("moondream2", description="Model spec: moondream2, hf:<repo-or-folder>, random:<arch>.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    dtype: str = Field("auto", description="auto, float32, float16 or bfloat16.")
    max_new_tokens: int = Field(40, ge=1, le=1024)
    min_new_tokens: int | None = Field(None, ge=0)
    cache_dir: Path | None = Field(None, description="Model cache folder (default: the Hugging Face cache).")
    allow_download: bool = True
    compile: bool = False
    detail: Literal["low", "high"] = "low"
    max_batch: int | None = Field(None, ge=1)

    # --- server ------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    open_browser: bool = True
    # Per-frame limits (WebSocket frames and HTTP uploads). Pixels are checked from the image
    # header, before anything is decoded.
    max_frame_bytes: int = Field(8 * 1024 * 1024, ge=1, description="Largest frame image, in bytes.")
    max_frame_pixels: int = Field(4096 * 4096, ge=1, description="Largest frame, width x height.")

    def model_options(self) -> ModelOptions:
        return ModelOptions(
            device=self.device,
            dtype=self.dtype,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            cache_dir=self.cache_dir,
            allow_download=self.allow_download,
            compile=self.compile,
            detail=self.detail,
            max_batch=self.max_batch,
        )
