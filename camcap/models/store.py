"""What is on disk: whether the model a spec names is downloaded (or built), where, and how big.

Shared by `camcap models` and `camcap doctor`. Reads caches only; never downloads or builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from camcap.models.options import ModelOptions
from camcap.models.registry import DEFAULT_SPEC, hub_cache_dir, known_specs, random_checkpoint_dir


@dataclass(frozen=True)
class ModelStatus:
    spec: str
    description: str
    available: bool  # downloaded (Hub models) or built (random checkpoints)
    path: str | None
    size_on_disk_bytes: int | None
    approx_size_gb: float | None  # download size; None for tiny local builds
    source: str  # "hub", "random", "demo" (shipped inside camcap), "folder" or "remote" (openai:)


def model_status(spec: str, options: ModelOptions) -> ModelStatus:
    """Whether the model a spec names is on disk, where, and how big. Raises for unknown specs."""
    from camcap.models.registry import create_captioner

    known = {info.spec: info for info in known_specs()}
    name, _, revision = spec.strip().partition("@")
    if name == DEFAULT_SPEC:
        from camcap.models import moondream

        # Every snapshot setup() needs (weights and tokenizer), reported as one model.
        found = [_hub_snapshot(d.repo_id, d.revision, options) for d in moondream.required_downloads(revision or None)]
        available = all(path is not None for path, _ in found)
        size = sum(size or 0 for _, size in found) if available else None
        info = known[DEFAULT_SPEC]
        return ModelStatus(spec, info.description, available, found[0][0], size, info.approx_size_gb, "hub")
    if spec.startswith("random:") and spec in known:
        from camcap.models import random_checkpoints

        folder = random_checkpoint_dir(options) / spec[len("random:") :]
        built = random_checkpoints.is_random_checkpoint(folder)
        info = known[spec]
        size = _folder_size(folder) if built else None
        path = str(folder) if built else None
        return ModelStatus(spec, info.description, built, path, size, info.approx_size_gb, "random")
    if spec.startswith("demo:") and spec in known:
        from camcap.models import demo

        folder = demo.checkpoint_dir(spec[len("demo:") :])
        shipped = demo.is_demo_checkpoint(folder)
        size = _folder_size(folder) if shipped else None
        return ModelStatus(spec, known[spec].description, shipped, str(folder) if shipped else None, size, None, "demo")
    if spec.startswith("hf:") and len(spec) > 3:
        source = spec[3:]
        if Path(source).is_dir():
            return ModelStatus(spec, "a local folder", True, source, _folder_size(Path(source)), None, "folder")
        repo, _, hf_revision = source.partition("@")
        path, size = _hub_snapshot(repo, hf_revision or None, options)
        return ModelStatus(spec, "a Hugging Face Hub model", path is not None, path, size, None, "hub")
    if spec.startswith("openai:"):
        from camcap.models.openai_api import parse_spec

        # Nothing to download: the model lives on its server (whether it answers is checked at load).
        origin = parse_spec(spec).origin
        description = f"a model on the OpenAI-compatible server {origin}"
        return ModelStatus(spec, description, True, origin, None, None, "remote")
    create_captioner(spec, options)  # raises UnknownModelSpecError listing the known specs
    raise AssertionError(f"create_captioner accepted {spec!r} but model_status does not know it")


def list_models(options: ModelOptions) -> list[ModelStatus]:
    """The status of every spec `camcap models` lists."""
    return [model_status(info.spec, options) for info in known_specs()]


def _hub_snapshot(repo_id: str, revision: str | None, options: ModelOptions) -> tuple[str | None, int | None]:
    """The cached snapshot of `repo_id` at `revision` (a branch, tag or commit) and its size."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hub_cache_dir(options))
    except CacheNotFound:
        return None, None
    wanted = revision or "main"
    for repo in cache.repos:
        if repo.repo_type != "model" or repo.repo_id != repo_id:
            continue
        for rev in repo.revisions:
            if wanted == rev.commit_hash or wanted in rev.refs:
                return str(rev.snapshot_path), rev.size_on_disk
    return None, None


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
