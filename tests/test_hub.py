from __future__ import annotations

import pytest

from camcap import ModelNotAvailableError
from camcap.models.hub import resolve_snapshot


def test_missing_model_offline_names_model_size_and_the_pull_command(tmp_path):
    with pytest.raises(ModelNotAvailableError) as caught:
        resolve_snapshot(
            "someone/some-vlm", revision="abc123", cache_dir=tmp_path, approx_size_gb=3.7, spec="hf:someone/some-vlm"
        )
    message = str(caught.value)
    assert "someone/some-vlm@abc123" in message
    assert "about 3.7 GB" in message
    assert "`camcap pull hf:someone/some-vlm`" in message
    assert "HF_HUB_OFFLINE" in message


def test_downloads_turned_off_say_so(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="downloads are turned off"):
        resolve_snapshot("someone/other", cache_dir=tmp_path, allow_download=False)


def test_a_cached_snapshot_is_found_without_network(tmp_path):
    # Lay out a cache entry the way huggingface_hub does, then resolve it offline.
    repo = tmp_path / "models--someone--cached"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    assert resolve_snapshot("someone/cached", cache_dir=tmp_path) == snapshot
