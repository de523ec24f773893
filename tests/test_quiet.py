"""Quiet model loads: no third-party progress bars or warnings unless the user asks for logs (`-v`)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from camcap.models._quiet import quiet_load

MODEL = "random:blip-tiny"


@pytest.fixture
def camcap_log_level() -> Iterator[logging.Logger]:
    """The "camcap" logger, its level restored afterwards."""
    logger = logging.getLogger("camcap")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_a_quiet_load_hides_transformers_bars_and_logs_and_restores_them(camcap_log_level):
    from transformers.utils import logging as transformers_logging

    camcap_log_level.setLevel(logging.WARNING)
    before = logging.getLogger("transformers").getEffectiveLevel()
    with quiet_load():
        assert logging.getLogger("transformers").getEffectiveLevel() == logging.ERROR
        assert transformers_logging.tqdm(range(3), desc="Loading weights").disable
    assert logging.getLogger("transformers").getEffectiveLevel() == before
    bar = transformers_logging.tqdm(range(3), desc="Loading weights", file=sys.stderr)
    assert not bar.disable
    bar.close()


def test_a_quiet_load_drops_other_packages_warnings_but_keeps_camcaps(camcap_log_level):
    camcap_log_level.setLevel(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_load():
            warnings.warn_explicit("deprecated thing", FutureWarning, "modeling_utils.py", 1, module="transformers.x")
            warnings.warn_explicit("camcap's own", RuntimeWarning, "device.py", 1, module="camcap.models.device")
        warnings.warn_explicit("after the load", FutureWarning, "modeling_utils.py", 2, module="transformers.x")
    assert [str(w.message) for w in caught] == ["camcap's own", "after the load"]


def test_verbose_logging_lets_everything_through(camcap_log_level):
    camcap_log_level.setLevel(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_load():
            warnings.warn_explicit("deprecated thing", FutureWarning, "modeling_utils.py", 1, module="transformers.x")
    assert [str(w.message) for w in caught] == ["deprecated thing"]


def _caption(image: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "camcap", *flags, "caption", str(image), "--model", MODEL]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_camcap_caption_prints_no_third_party_bars_or_warnings_unless_verbose(subprocess_env, tmp_path):
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(image)
    env = {**subprocess_env, "CAMCAP_MIN_NEW_TOKENS": "4", "CAMCAP_MAX_NEW_TOKENS": "4"}
    env.pop("CAMCAP_MODEL", None)

    quiet = _caption(image, env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip()
    # Progress bars (tqdm draws "it/s]"), Python warnings ("FutureWarning: ...") and transformers' log lines.
    for noise in ("Loading weights", "it/s]", "Warning:", "[transformers]"):
        assert noise not in quiet.stderr, quiet.stderr
    assert "random weights" in quiet.stderr  # camcap's own notice stays

    verbose = _caption(image, env, "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "Loading weights" in verbose.stderr  # transformers' own progress bar, back with -v
