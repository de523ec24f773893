"""The page's pure modules (camcap/web/pacer.js, history.js, export.js) under Node's own test
runner: tests/js/*.test.mjs, on a fake clock, without a browser.

They are the tests StrykerJS mutates (docs/testing.md). Like the browser tests, they skip without
Node unless CAMCAP_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Node runs camcap/web/*.js (ES modules beside no package.json) by detecting their syntax from 20.19 on.
MIN_NODE = (20, 19)


def find_node() -> str:
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "Node.js not found: `apt-get install -y nodejs` (20.19 or later)."
    else:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
        if found < MIN_NODE:
            problem = f"Node.js {version} is too old for tests/js: 20.19 or later is needed."
    if problem:
        if os.environ.get("CAMCAP_REQUIRE_BROWSER") == "1":
            pytest.fail(problem + " (CAMCAP_REQUIRE_BROWSER=1)")
        pytest.skip(problem)
    assert node is not None
    return node


def test_the_page_modules_pass_their_node_tests():
    node = find_node()
    result = subprocess.run(
        [node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    summary = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", result.stdout, re.MULTILINE))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert int(summary["tests"]) >= 30 and summary["fail"] == "0", summary
