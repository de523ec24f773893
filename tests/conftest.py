"""Shared fixtures. Every test runs offline: the model hub is unreachable here and in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No deadline for any property test: how long an example takes is not what these tests check, and
# on a loaded machine (CI's 2 cores, a mutation run) a first example can take 50x its usual time,
# which Hypothesis reports as a flaky failure.
settings.register_profile("camcap", deadline=None)
settings.load_profile("camcap")

# Set before anything imports huggingface_hub (it reads these once, at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """camcap's cache folder for this test session (pass as ModelOptions(cache_dir=...) or
    CAMCAP_CACHE_DIR). `random:` checkpoints are built into it on first use and reused."""
    return tmp_path_factory.mktemp("camcap-cache")


@pytest.fixture(scope="session")
def subprocess_env(model_cache: Path) -> dict[str, str]:
    """Environment for `camcap ...` subprocesses: offline, sharing this session's model cache."""
    env = dict(os.environ)
    env["CAMCAP_CACHE_DIR"] = str(model_cache)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    # `camcap serve` makes an access token on loopback by default; tests that talk to it without
    # one opt out, as `--no-token` does (tests of the token itself drop this).
    env["CAMCAP_LOOPBACK_TOKEN"] = "false"
    return env


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run several times faster on one torch thread than on two contended ones here;
    modules that run them opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
