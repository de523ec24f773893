"""Load remote-code models such as Moondream 2 correctly under transformers 5 as well as 4.x.

Moondream's model class is remote code written for transformers 4. transformers 5 breaks it twice
(both failures are reproduced on a tiny model in tests/test_moondream.py):

1. transformers 5 keeps loading metadata (`all_tied_weights_keys`, ...) that `post_init()` fills
   in, and expects every model constructor to call `post_init()`. `HfMoondream.__init__` does not,
   so loading fails with `'HfMoondream' object has no attribute 'all_tied_weights_keys'`.
2. transformers 5 builds the model on the meta device, loads the checkpoint, then re-creates each
   *non-persistent* buffer as uninitialised memory on the real device and relies on
   `_init_weights` to refill it. Moondream computes its attention mask and its rotary table
   (`freqs_cis`) in `__init__` as non-persistent buffers and has no `_init_weights` for them: the
   model loads without an error and writes fluent nonsense.

The fix follows pipecat-ai/pipecat pull request 5856 (the upstream fix is asked for in the model's
Hub discussion 84): load through a thin subclass of the remote class whose constructor ends with
`post_init()`, and recompute the buffers from their definitions. Unlike that PR we recompute them
*after* `from_pretrained` and after the model is moved to its device and dtype, instead of inside
`_init_weights`: the same code then runs on transformers 4 (where it rewrites identical values) and
5, independent of v5's initialisation order and its `_is_hf_initialized` bookkeeping. Under
transformers 5 a non-persistent buffer without a recipe is an error: garbage must not load quietly.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT")
# Computes one buffer from its definition: (module that owns it, buffer name) -> tensor, in the
# definition's dtype, on any device (it is moved to where the buffer lives).
BufferRecipe = Callable[["nn.Module", str], "torch.Tensor"]


def transformers_major() -> int:
    """The installed transformers' major version (4 or 5)."""
    import transformers

    return int(transformers.__version__.split(".", 1)[0])


def with_post_init(model_class: type[ModelT]) -> type[ModelT]:
    """A subclass of `model_class` whose constructor ends with `post_init()` where transformers
    5 needs it and the class's own constructor did not call it. One subclass per class."""
    if model_class in _WITH_POST_INIT:
        return _WITH_POST_INIT[model_class]
    base_init = model_class.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)
        # transformers 4's post_init would also (re)initialise weights; it is only needed on 5.
        if transformers_major() >= 5 and not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    # Same module and name as the remote class: transformers derives "custom code" handling from
    # them, and error messages keep naming the class users know.
    namespace = {"__init__": __init__, "__module__": model_class.__module__, "__qualname__": model_class.__qualname__}
    subclass = type(model_class.__name__, (model_class,), namespace)
    _WITH_POST_INIT[model_class] = subclass
    return subclass


_WITH_POST_INIT: dict[Any, Any] = {}


def restore_non_persistent_buffers(model: nn.Module, recipes: Mapping[str, BufferRecipe], *, strict: bool) -> list[str]:
    """Recompute every non-persistent buffer of `model` whose name has a recipe; return their paths.

    With `strict`, a non-persistent buffer without a recipe raises: under transformers 5 it holds
    uninitialised memory. Each value keeps its definition's dtype (a float32 rotary table stays
    float32 in a bfloat16 model, as the model's own constructor made it).
    """
    import torch

    fallback_device = next((p.device for p in model.parameters() if p.device.type != "meta"), torch.device("cpu"))
    restored = []
    for module_name, module in model.named_modules():
        for name in sorted(module._non_persistent_buffers_set):
            current = module._buffers.get(name)
            if current is None:
                continue
            path = f"{module_name}.{name}" if module_name else name
            recipe = recipes.get(name)
            if recipe is None:
                if strict:
                    raise RuntimeError(
                        f"The non-persistent buffer {path!r} of {type(model).__name__} is not in the checkpoint and "
                        "transformers 5 leaves it uninitialised; camcap does not know how to rebuild it. This model "
                        "revision differs from the one camcap supports: use the default revision, or transformers 4."
                    )
                continue
            value = recipe(module, name)
            if tuple(value.shape) != tuple(current.shape):
                raise RuntimeError(
                    f"Rebuilt buffer {path!r} has shape {tuple(value.shape)} but the model expects "
                    f"{tuple(current.shape)}; this model revision differs from the one camcap supports."
                )
            device = current.device if current.device.type != "meta" else fallback_device
            module.register_buffer(name, value.to(device=device), persistent=False)
            restored.append(path)
    return restored


def load_with_compat(
    model_class: type[ModelT],
    source: str | Path,
    *,
    recipes_for: Callable[[Any], Mapping[str, BufferRecipe]],
    device: str | None = None,
    dtype: torch.dtype | None = None,
    from_pretrained: Mapping[str, Any] | None = None,
) -> ModelT:
    """`model_class.from_pretrained(source, **from_pretrained)` that also works under transformers 5.

    The model is moved to `device`/`dtype` (when given) *before* its buffers are rebuilt, so they
    land on the real device; it is returned in eval mode.
    """
    loader = with_post_init(model_class).from_pretrained  # type: ignore[attr-defined]
    model: Any = loader(str(source), **dict(from_pretrained or {}))
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    restored = restore_non_persistent_buffers(model, recipes_for(model), strict=transformers_major() >= 5)
    logger.debug("Rebuilt non-persistent buffers of %s: %s", type(model).__name__, ", ".join(restored) or "none")
    return model.eval()  # type: ignore[no-any-return]


def moondream_buffer_recipes(model: Any) -> dict[str, BufferRecipe]:
    """Recipes for Moondream 2's non-persistent buffers, read from its remote code.

    `freqs_cis` (rotary table, in the `text` module) and `attn_mask` (causal mask whose first
    1 + 27 * 27 positions, BOS and the image tokens, attend to each other; on `MoondreamModel`
    in 2025 revisions, on `text` with `TextConfig.prefix_attn` in older ones).
    """
    import torch

    inner = getattr(model, "model", model)  # HfMoondream wraps MoondreamModel as `.model`
    text, vision = inner.config.text, inner.config.vision
    precompute = _remote_function(model, "rope", "precompute_freqs_cis") or _precompute_freqs_cis

    def freqs_cis(owner: nn.Module, name: str) -> torch.Tensor:
        return precompute(text.dim // (2 * text.n_heads), text.max_context)

    def attn_mask(owner: nn.Module, name: str) -> torch.Tensor:
        size = text.max_context
        mask = torch.tril(torch.ones(1, 1, size, size, dtype=torch.bool))
        if owner is inner:
            prefix = 1 + (vision.crop_size // vision.enc_patch_size) ** 2
        else:
            prefix = getattr(text, "prefix_attn", 0)
        if prefix:
            mask[..., :prefix, :prefix] = True
        return mask

    return {"freqs_cis": freqs_cis, "attn_mask": attn_mask}


def _remote_function(model: Any, module: str, name: str) -> Callable[..., Any] | None:
    """`name` from the sibling module `module` of the model's remote package, if it is loaded."""
    package = type(model).__module__.rpartition(".")[0]
    found = getattr(sys.modules.get(f"{package}.{module}" if package else module), name, None)
    return found if callable(found) else None


def _precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """Moondream's `rope.precompute_freqs_cis`, used when its module cannot be found."""
    import torch

    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim))
    angles = torch.arange(end, dtype=torch.float32).unsqueeze(1) * freqs.unsqueeze(0)
    rotations = torch.exp(1j * angles)
    return torch.stack([rotations.real, rotations.imag], dim=-1)
