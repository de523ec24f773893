"""Quiet model loads: third-party progress bars and warnings only when the user asks for logs.

Loading a local checkpoint makes transformers draw a "Loading weights" progress bar and log
warnings (unused weights, deprecated options) that a camcap user can do nothing about. While
`quiet_load()` runs, transformers logs only errors, draws no bars, and Python warnings raised by
other packages are dropped. It follows camcap's own log level: with `camcap -v` (the "camcap"
logger at INFO or lower) everything shows as usual.

Downloads are not wrapped: camcap resolves the snapshot first (with huggingface_hub's progress bar,
which people want to see), then loads the local folder inside `quiet_load()`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# Warnings whose module is not camcap's are dropped during a quiet load; camcap's own stay.
_NOT_CAMCAP = r"(?!camcap(\.|$))"


def third_party_output_wanted() -> bool:
    """True when the user asked for camcap's informational logs (`camcap -v`)."""
    return logging.getLogger("camcap").isEnabledFor(logging.INFO)


@contextmanager
def quiet_load() -> Iterator[None]:
    """Silence transformers' progress bars and warnings, and other packages' Python warnings, for a load.

    warnings.catch_warnings() swaps the process-wide filter list: a warning another thread raises
    meanwhile is filtered the same way, which is acceptable for the seconds a load takes.
    """
    if third_party_output_wanted():
        yield
        return
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    restore_bars = _disable_transformers_bars(transformers_logging)
    transformers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_NOT_CAMCAP)
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        restore_bars()


def _disable_transformers_bars(transformers_logging: Any) -> Callable[[], None]:
    """Turn off transformers' own tqdm bars and return how to restore them. Not through its
    disable_progress_bar(), which also switches off (and its counterpart back on) huggingface_hub's
    download bars for the whole process."""
    if hasattr(transformers_logging, "set_tqdm_hook"):  # transformers 5: a hook on every bar it creates
        previous = getattr(transformers_logging, "_tqdm_hook", None)
        transformers_logging.set_tqdm_hook(_disabled_bar)
        return lambda: transformers_logging.set_tqdm_hook(previous)
    # transformers 4 has no hook: its switch is the module flag that disable_progress_bar() sets.
    active = getattr(transformers_logging, "_tqdm_active", True)
    transformers_logging._tqdm_active = False
    return lambda: setattr(transformers_logging, "_tqdm_active", active)


def _disabled_bar(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return factory(*args, **{**kwargs, "disable": True})
