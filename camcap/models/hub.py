"""Find a Hub model on disk, downloading it once if allowed, with errors that say what to do."""

from __future__ import annotations

import logging
from pathlib import Path

from camcap.errors import ModelNotAvailableError

logger = logging.getLogger(__name__)


def resolve_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    approx_size_gb: float | None = None,
    spec: str | None = None,
) -> Path:
    """Return the local folder holding `repo_id` at `revision`.

    Looks in the cache first (no network). If the model is missing, downloads it with
    huggingface_hub's progress bars when `allow_download` is true and the Hub is reachable;
    otherwise raises `ModelNotAvailableError` naming the model, its size and the command that
    fetches it ahead of time.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass  # not cached yet: fall through to the download

    if not allow_download or hub_offline():
        raise _not_available(repo_id, revision, approx_size_gb, spec, reason=_offline_reason(allow_download))

    size = f" (about {approx_size_gb:g} GB, once)" if approx_size_gb else ""
    logger.warning("Downloading %s%s from the Hugging Face Hub...", _label(repo_id, revision), size)
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir))
    except Exception as exc:  # the hub client raises many types for "no network"
        raise _not_available(
            repo_id, revision, approx_size_gb, spec, reason=f"the download failed: {exc.__class__.__name__}: {exc}"
        ) from exc


def hub_offline() -> bool:
    """True when the user told huggingface_hub not to use the network (HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _offline_reason(allow_download: bool) -> str:
    if not allow_download:
        return "downloads are turned off"
    return "HF_HUB_OFFLINE is set, so nothing can be downloaded"


def _label(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


def _not_available(
    repo_id: str, revision: str | None, approx_size_gb: float | None, spec: str | None, *, reason: str
) -> ModelNotAvailableError:
    size = f"a one-time download of about {approx_size_gb:g} GB" if approx_size_gb else "a one-time download"
    pull = f"camcap pull {spec or 'hf:' + repo_id}"
    return ModelNotAvailableError(
        f"The model {_label(repo_id, revision)} is not in the local cache and {reason}. "
        f"It needs {size}. On a machine with internet, run `{pull}` once "
        "(or unset HF_HUB_OFFLINE), then try again."
    )
