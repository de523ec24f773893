"""Turn a downloaded Moondream 2 snapshot into a model object on the chosen device.

Kept apart from the adapter so that `moondream.py` stays about tasks and events; everything that
imports torch or transformers for Moondream lives here and in `_moondream_compat.py`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from camcap.errors import ModelNotAvailableError
from camcap.models._moondream_compat import load_with_compat, moondream_buffer_recipes, transformers_major

logger = logging.getLogger(__name__)


def load_moondream(
    snapshot: Path,
    *,
    code_source: str | Path,
    code_revision: str | None,
    cache_dir: Path | None,
    hub_tokenizers: Mapping[str, Path],
    device: str,
    dtype: str,
) -> Any:
    """Load the model class named in the snapshot's `config.json` and its weights.

    This executes the snapshot's Python code: callers decide that it is trusted. `code_source` is
    where transformers reads that code: the Hub repo id (with `code_revision` and `cache_dir`,
    read from the local cache only) or a folder. `hub_tokenizers` maps Hub repo ids the code
    fetches tokenizers from at construction to folders holding their `tokenizer.json`.
    """
    import torch
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    reference = auto_class_reference(snapshot)
    # The repo-id form reads module files from the Hub cache and follows relative imports
    # recursively on every transformers version; transformers 4's folder form copies only direct
    # imports, which misses Moondream's layers.py and rope.py.
    model_class = get_class_from_dynamic_module(
        reference,
        str(code_source),
        revision=code_revision,
        cache_dir=cache_dir,
        local_files_only=True,
    )
    redirect_hub_tokenizers(model_class, hub_tokenizers)

    torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {
        # Only resolves auto classes inside this same snapshot.
        "trust_remote_code": True,
        "local_files_only": True,
        # transformers 5 renamed `torch_dtype` to `dtype`; 4.x before 4.56 only knows the old name.
        "dtype" if transformers_major() >= 5 else "torch_dtype": torch_dtype,
    }
    if importlib.util.find_spec("accelerate") is not None:
        # Loads straight onto the GPU; without accelerate, transformers refuses device_map and the
        # model is loaded on the CPU and moved (more host memory for a moment, same result).
        kwargs["device_map"] = {"": device}
    return load_with_compat(
        model_class,
        snapshot,
        recipes_for=moondream_buffer_recipes,
        device=device,
        dtype=torch_dtype,
        from_pretrained=kwargs,
    )


def auto_class_reference(snapshot: Path) -> str:
    """`module.Class` of the snapshot's AutoModelForCausalLM, read from config.json (no code runs)."""
    config_file = snapshot / "config.json"
    try:
        auto_map = json.loads(config_file.read_text(encoding="utf-8"))["auto_map"]
        return str(auto_map["AutoModelForCausalLM"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelNotAvailableError(
            f"{config_file} does not name a model class (config.json with auto_map.AutoModelForCausalLM was "
            f"expected): the snapshot in {snapshot} is incomplete or not a Moondream 2 release. Delete it and "
            "run `camcap pull moondream2` again."
        ) from exc


class _LocalHubTokenizers:
    """Stands in for `tokenizers.Tokenizer` inside the remote package.

    Moondream's constructor calls `Tokenizer.from_pretrained("moondream/starmie-v1")`, an unpinned
    download from a second repo that fails offline. camcap downloads that repo with the model and
    serves it from disk here. (The `tokenizer.json` in the model repo is *not* a substitute: it is
    an older, smaller vocabulary, and decoding with it gives fluent nonsense without an error.)
    """

    def __init__(self, real: Any, folders: Mapping[str, Path]) -> None:
        self._real = real
        self._folders = dict(folders)

    def from_pretrained(self, identifier: str, *args: Any, **kwargs: Any) -> Any:
        folder = self._folders.get(identifier)
        if folder is None:
            return self._real.from_pretrained(identifier, *args, **kwargs)
        return self._real.from_file(str(folder / "tokenizer.json"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def redirect_hub_tokenizers(model_class: type, folders: Mapping[str, Path]) -> int:
    """Point `Tokenizer.from_pretrained` in every loaded module of `model_class`'s package at
    local folders; return how many modules were patched. The patch stays: the package is this
    model's private copy of the remote code, and the tokenizer may be built lazily."""
    from tokenizers import Tokenizer

    package = model_class.__module__.rpartition(".")[0]
    if package:
        modules = [module for name, module in list(sys.modules.items()) if name.startswith(package + ".")]
    else:  # a top-level module has no package: patch only that module
        modules = [sys.modules[model_class.__module__]]
    patched = 0
    for module in modules:
        current = getattr(module, "Tokenizer", None)
        if current is Tokenizer:
            module.Tokenizer = _LocalHubTokenizers(Tokenizer, folders)  # type: ignore[attr-defined]
            patched += 1
        elif isinstance(current, _LocalHubTokenizers):
            current._folders.update(folders)
            patched += 1
    return patched


def compile_model(model: Any) -> bool:
    """Use the model's own `compile()` (Moondream compiles its vision encoder, prefill and decode
    steps); return False if it has none. `nn.Module.compile` is not it: it compiles `forward`,
    which Moondream never calls."""
    import torch

    for candidate in (getattr(model, "model", None), model):
        method = getattr(type(candidate), "compile", None)
        if candidate is not None and method is not None and method is not torch.nn.Module.compile:
            candidate.compile()
            return True
    return False
