"""Random-weight checkpoints of real architectures, built offline.

Tests and benchmarks need real models going through the real loading path, but this project's
machines cannot reach a model hub. So we build a checkpoint from an architecture's config class:
random weights (fixed seed), a WordLevel tokenizer of English words, the image processor from its
class defaults, the architecture's processor, all saved with `save_pretrained`. camcap then loads
the folder exactly as it loads a downloaded model (`hf:<folder>`).

Two families:
  *-tiny   hidden size ~32, 2 layers, a few MB, built in seconds: for tests.
  others   the real model's dimensions, so the same compute as the real model: for benchmarks.
           Their captions are as meaningless as the tiny ones'; only the timings mean something.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from camcap.errors import UnknownModelSpecError
from camcap.models import _random_archs as archs
from camcap.models._wordlevel import PUNCTUATION, WORDS

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

logger = logging.getLogger(__name__)

SEED = 0
# Bump when a builder changes what it writes in a way the config and vocabulary do not show
# (they are part of the build fingerprint already): cached checkpoints are then rebuilt.
BUILD_VERSION = 1
MARKER = "camcap-random.json"


@dataclass(frozen=True)
class RandomArchitecture:
    """A random-weight checkpoint camcap can build: `random:<name>`."""

    description: str
    approx_size_gb: float | None  # size on disk once built; None for the tiny ones (a few MB)
    config: Callable[[], PreTrainedConfig]  # the model's config, cheap to call (no weights)
    build: Callable[[PreTrainedConfig], archs.Built]  # random model + processor for that config
    tiny: bool = False


_TESTS_ONLY = "random weights, hidden size 32 (tests only: the words mean nothing)"
_BENCHMARKS = "random weights, real size (benchmarks: the timings are real, the words mean nothing)"

RANDOM_ARCHITECTURES: dict[str, RandomArchitecture] = {
    "blip-tiny": RandomArchitecture(
        f"BLIP captioner, {_TESTS_ONLY}", None, archs.blip_tiny, archs.build_blip, tiny=True
    ),
    "git-tiny": RandomArchitecture(f"GIT captioner, {_TESTS_ONLY}", None, archs.git_tiny, archs.build_git, tiny=True),
    "florence2-tiny": RandomArchitecture(
        f"Florence-2, {_TESTS_ONLY}", None, archs.florence2_tiny, archs.build_florence2, tiny=True
    ),
    "smolvlm-tiny": RandomArchitecture(
        f"SmolVLM (Idefics3) chat model, {_TESTS_ONLY}", None, archs.smolvlm_tiny, archs.build_smolvlm, tiny=True
    ),
    "blip-base": RandomArchitecture(
        f"BLIP base (Salesforce/blip-image-captioning-base), {_BENCHMARKS}", 0.9, archs.blip_base, archs.build_blip
    ),
    "git-base": RandomArchitecture(
        f"GIT base (microsoft/git-base), {_BENCHMARKS}", 0.71, archs.git_base, archs.build_git
    ),
    "smolvlm-256m": RandomArchitecture(
        f"SmolVLM-256M-Instruct (SigLIP 93M + SmolLM2-135M), {_BENCHMARKS}",
        1.03,
        archs.smolvlm_256m,
        archs.build_smolvlm,
    ),
    "moondream-sized": RandomArchitecture(
        f"Moondream 2's compute (SigLIP so400m at 378 px + Phi-1.5, joined as Idefics3; not its code), {_BENCHMARKS}",
        7.3,  # 1.83 B parameters saved in float32
        archs.moondream_sized,
        archs.build_smolvlm,
    ),
    "moondream-sized-tiny": RandomArchitecture(
        f"the moondream-sized build's wiring (Phi behind Idefics3, 729 image tokens), {_TESTS_ONLY}",
        None,
        archs.moondream_sized_tiny,
        archs.build_smolvlm,
        tiny=True,
    ),
}


def ensure_checkpoint(name: str, folder: Path) -> Path:
    """Return `folder/<name>`, building the random checkpoint there first if it is missing.

    Built once and reused. The build happens in a temporary folder next to the target and is
    renamed into place only when complete, so an interrupted build never leaves a half
    checkpoint; a marker file records the build's fingerprint, and an outdated build is replaced.
    """
    try:
        arch = RANDOM_ARCHITECTURES[name]
    except KeyError:
        raise UnknownModelSpecError(
            f"Unknown random architecture {name!r}, expected one of: {', '.join(RANDOM_ARCHITECTURES)}."
        ) from None
    target = Path(folder) / name
    fingerprint = build_fingerprint(name)
    if _is_current(target, fingerprint):
        return target

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    size = f" (about {arch.approx_size_gb:g} GB)" if arch.approx_size_gb else ""
    logger.info("Building the random-weight checkpoint %s%s in %s...", name, size, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-building-", dir=folder))
    staging.chmod(0o755)  # mkdtemp makes it private; the installed checkpoint is an ordinary folder
    try:
        build_checkpoint(name, staging)
        _install(staging, target, fingerprint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_checkpoint(name: str, folder: Path) -> None:
    """Build `name` into the (existing, empty) `folder`, deterministically (fixed seed)."""
    import torch
    from transformers.utils import logging as hf_logging

    arch = RANDOM_ARCHITECTURES[name]
    config = arch.config()
    # A private RNG state: building a checkpoint must not change the caller's random numbers.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "some weights were newly initialised" is the point here
        try:
            model, processor = arch.build(config)
        finally:
            hf_logging.set_verbosity(verbosity)
    model.eval()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a few MB written in a blink do not need a progress bar
    try:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    marker = {"name": name, "fingerprint": build_fingerprint(name), "seed": SEED, "random_weights": True}
    (Path(folder) / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def is_random_checkpoint(folder: Path) -> bool:
    """True if `folder` was built by `ensure_checkpoint` (its captions are meaningless)."""
    return (Path(folder) / MARKER).is_file()


def build_fingerprint(name: str) -> str:
    """A digest of everything a build depends on: config, vocabulary, seed and BUILD_VERSION.

    Stored in the marker file; a cached checkpoint whose fingerprint differs (its builder or
    the word list changed since) is rebuilt instead of being silently reused.
    """
    config = RANDOM_ARCHITECTURES[name].config().to_dict()
    config.pop("transformers_version", None)
    payload = json.dumps([BUILD_VERSION, SEED, config, WORDS, PUNCTUATION], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _is_current(target: Path, fingerprint: str) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("fingerprint") == fingerprint


def _install(staging: Path, target: Path, fingerprint: str) -> None:
    """Move a finished build into place atomically, replacing an outdated one if present."""
    old: Path | None = None
    if target.exists():
        if _is_current(target, fingerprint):  # another process finished the same build first: keep theirs
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(staging, target)
    except OSError:
        if not _is_current(target, fingerprint):  # lost a race to a process that installed a current build
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
