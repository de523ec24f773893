"""Per-model knobs, gathered in one object so backends take the same arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

Detail = Literal["low", "high"]


@dataclass(frozen=True)
class ModelOptions:
    """How to load and run a model. Every backend accepts the same options and ignores the ones
    that do not apply to it (e.g. `detail` only changes Moondream's preferred frame size)."""

    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    dtype: str = "auto"  # "auto", "float32", "float16", "bfloat16"
    max_new_tokens: int = 40
    # Set equal to max_new_tokens in benchmarks so every run decodes the same number of tokens.
    min_new_tokens: int | None = None
    # Where `random:` checkpoints are built and Hub downloads go; None = the Hugging Face cache.
    cache_dir: Path | None = None
    # Download missing weights from the Hub on first use (False: fail with the `camcap pull` hint).
    allow_download: bool = True
    compile: bool = False  # torch.compile where the backend supports it
    detail: Detail = "low"  # speed (low) or detail (high): maps to the frame size the page sends
    max_batch: int | None = None  # cap the backend's batch size (None: the backend's default)
    # --- the openai: backend (models/openai_api.py) ---
    input_size: int | None = None  # short side frames are sized to (None: 512)
    max_inflight: int = 8  # requests in flight at once; the server batches them
    openai_api_key: SecretStr | None = None  # from CAMCAP_OPENAI_API_KEY only; SecretStr keeps it out of repr()
    openai_timeout_s: float = 60.0
    openai_prompts: tuple[tuple[str, str], ...] = ()  # (task key, template) overrides

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.min_new_tokens is not None and not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be between 0 and max_new_tokens ({self.max_new_tokens}), "
                f"got {self.min_new_tokens}."
            )
        if self.max_inflight < 1 or (self.input_size is not None and self.input_size < 16):
            raise ValueError(
                f"max_inflight must be >= 1 and input_size >= 16, got {self.max_inflight} and {self.input_size}."
            )
        if self.detail not in ("low", "high"):
            raise ValueError(f"Invalid detail {self.detail!r}, expected one of: low, high")
