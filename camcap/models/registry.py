"""Map a model spec string to a backend.

Specs:
    moondream2[@revision]      Moondream 2 (the default), pinned to a known-good revision
    hf:<repo-id-or-folder>     any image-text-to-text model transformers supports natively
    random:<arch>-<size>       a random-weight checkpoint of a real architecture (tests, benchmarks)
    openai:<base_url>#<model>  a model on an OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama)
    demo:<name>                a small model camcap trained itself and ships (demo:shapes)

Backends are imported lazily so that `camcap --help` and the server's tests do not pay for torch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from camcap.errors import UnknownModelSpecError
from camcap.models.base import Captioner
from camcap.models.options import ModelOptions

DEFAULT_SPEC = "moondream2"


@dataclass(frozen=True)
class SpecInfo:
    """A spec `camcap models` lists, with what a user needs to decide whether to use it."""

    spec: str
    description: str
    approx_size_gb: float | None = None  # download / disk size; None for tiny local builds


def known_specs() -> list[SpecInfo]:
    """Every spec camcap can name without the user typing a repository id."""
    from camcap.models import demo, moondream, random_checkpoints

    specs = [SpecInfo(DEFAULT_SPEC, moondream.DESCRIPTION, moondream.APPROX_SIZE_GB)]
    specs += [SpecInfo(f"demo:{name}", description) for name, description in demo.DEMO_MODELS.items()]
    specs += [
        SpecInfo(f"random:{name}", arch.description, arch.approx_size_gb)
        for name, arch in random_checkpoints.RANDOM_ARCHITECTURES.items()
    ]
    return specs


def camcap_cache_dir(options: ModelOptions) -> Path:
    """Where camcap keeps what it builds itself (random checkpoints, certificates...)."""
    if options.cache_dir is not None:
        return Path(options.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "camcap"


def random_checkpoint_dir(options: ModelOptions) -> Path:
    """Where `random:` checkpoints are built, one folder per architecture."""
    return camcap_cache_dir(options) / "random"


def hub_cache_dir(options: ModelOptions) -> Path | None:
    """Where Hub downloads go: inside camcap's cache if the user set one, else the HF default."""
    return None if options.cache_dir is None else Path(options.cache_dir) / "hub"


def create_captioner(spec: str, options: ModelOptions | None = None) -> Captioner:
    """Build the backend a spec names. Cheap: nothing is loaded until `setup()`."""
    options = options or ModelOptions()
    spec = spec.strip()
    name, _, revision = spec.partition("@")

    if name == DEFAULT_SPEC:
        from camcap.models.moondream import MoondreamCaptioner

        return MoondreamCaptioner(options, revision=revision or None, spec=spec)

    if spec.startswith("hf:"):
        source = spec[3:]
        if not source:
            raise UnknownModelSpecError(
                "The spec 'hf:' needs a Hub repository id or a folder, e.g. hf:Salesforce/blip-image-captioning-base."
            )
        # A local folder is taken as is; a repo id may carry a revision: hf:org/name@rev.
        repo, _, hf_revision = ("", "", "") if Path(source).exists() else source.partition("@")
        repo = repo or source
        from camcap.models.transformers import TransformersCaptioner

        return TransformersCaptioner(repo, options, name=spec, revision=hf_revision or None)

    if spec.startswith("random:"):
        from camcap.models import random_checkpoints
        from camcap.models.transformers import TransformersCaptioner

        arch = spec[len("random:") :]
        if arch not in random_checkpoints.RANDOM_ARCHITECTURES:
            raise UnknownModelSpecError(
                f"Unknown random architecture {arch!r}, expected one of: "
                f"{', '.join(random_checkpoints.RANDOM_ARCHITECTURES)}."
            )
        # Building a checkpoint is I/O (seconds for the base sizes): defer it to setup().
        build = functools.partial(random_checkpoints.ensure_checkpoint, arch, random_checkpoint_dir(options))
        return TransformersCaptioner(build, options, name=spec, random_weights=True)

    if spec.startswith("openai:"):
        from camcap.models.openai_api import OpenAICaptioner

        return OpenAICaptioner(spec, options)
    if spec.startswith("demo:"):
        from camcap.models import demo
        from camcap.models.transformers import TransformersCaptioner

        # The shipped folder goes through the same loading path as hf:<folder>.
        return TransformersCaptioner(demo.checkpoint_dir(spec[len("demo:") :]), options, name=spec)

    known = ", ".join(info.spec for info in known_specs())
    raise UnknownModelSpecError(
        f"Unknown model spec {spec!r}. Use one of: {known}; or hf:<repo-id-or-folder> for any "
        "Hugging Face image-text-to-text model; or openai:<base_url>#<model> for an OpenAI-compatible server."
    )
