"""`camcap bench`: the smoke run end to end, and the report's shapes. No timing is asserted: the
numbers of a tiny random model on a shared CI machine mean nothing; that every scenario ran
through the real server and reported sane structure does."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from camcap.bench import SCENARIOS, BenchOptions, BenchReport, Goal, ScenarioResult, Table
from camcap.cli import main
from camcap.config import Settings


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    env = dict(subprocess_env)
    env.pop("CAMCAP_MODEL", None)  # --smoke picks the tiny model unless --model is given
    return env


@pytest.mark.slow
def test_smoke_run_reports_every_scenario(env, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "camcap", "bench", "--smoke", "--json", str(out), "--markdown"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    assert report["model"]["name"] == "random:blip-tiny"
    assert report["model"]["new_tokens"] == 3
    assert report["command"].startswith("camcap bench --smoke")
    assert report["machine"]["cpu_count"] >= 1 and report["date"].endswith("Z")
    assert list(report["scenarios"]) == list(SCENARIOS)
    for name, result in report["scenarios"].items():
        assert result["name"] == name
        assert result["error"] is None, f"{name}: {result['error']}"
        columns, rows = result["table"]["columns"], result["table"]["rows"]
        assert rows, f"{name}: no rows"
        assert all(len(row) == len(columns) for row in rows), name
        assert all(goal["met"] in (True, False, None) for goal in result["goals"]), name

    scenarios = report["scenarios"]
    overhead = scenarios["overhead"]["data"]
    assert overhead["model"]["n"] == overhead["full"]["n"] == 2  # --smoke: 2 interleaved pairs
    assert overhead["model"]["median"] > 0 and overhead["full"]["median"] > 0
    # The model's time split by its own timings: to the first token, then each token after it.
    assert 0 < overhead["first_token"]["median"] < overhead["model"]["median"]
    assert 0 < overhead["per_token"]["median"] < overhead["model"]["median"]
    assert {goal["goal"] for goal in scenarios["overhead"]["goals"]} == {
        "camcap's overhead <= 5 % of model time",
        "camcap's overhead <= 10 ms median on localhost",
    }
    transports = scenarios["transports"]["data"]
    assert len(transports) == 4
    assert all(entry["overhead"]["n"] == 1 and entry["bytes"] > 0 for entry in transports.values())
    freshness = scenarios["freshness"]["data"]
    live = freshness["live (camcap page)"]
    assert live["captions"] >= 1 and live["age_ms"]["median"] > 0
    queue = freshness["FIFO queue, every frame"]
    assert queue["captions"] >= 1 and queue["model_ms"]["median"] > 0
    assert live["model_ms"]["n"] == live["captions"]  # the server's inference time of each caption
    streams = scenarios["streams"]["data"]["runs"]
    assert {(run["max_batch"], run["batch_window_ms"], run["streams"]) for run in streams} == {
        (1, 0.0, 1),
        (1, 0.0, 2),
        (8, 0.0, 1),
        (8, 0.0, 2),
        (8, 50.0, 1),
        (8, 50.0, 2),
    }
    assert all(run["captions"] == run["streams"] for run in streams)  # one measured caption per stream
    scaling = scenarios["batch_scaling"]["data"]
    assert set(scaling) == {"1", "2"}  # --smoke: batches as large as its stream counts
    assert all(entry["batch_ms"]["n"] == 1 and entry["frames_per_s"] > 0 for entry in scaling.values())
    assert scaling["1"]["x_batch_1"] == 1
    gating = scenarios["gating"]["data"]
    assert set(gating) == {"0", "0.2", "1"}
    assert gating["0"]["answers"].get("unchanged", 0) == 0  # threshold 0: gating off
    assert set(scenarios["stale_cut"]["data"]) == {"stale_after_ms", "off", "on"}
    scale = scenarios["scale_out"]["data"]["runs"]  # --smoke: 4 cameras, 1 and 2 stand-in replicas
    assert [(run["replicas"], run["max_inflight"]) for run in scale] == [(1, 2), (2, 4)]
    assert all(run["captions"] > 0 and len(run["captions_per_camera"]) == 4 for run in scale)

    # --markdown: a section to paste, with the exact command and the machine.
    assert done.stdout.startswith("### random:blip-tiny, 3 new tokens")
    assert "camcap bench --smoke" in done.stdout and "- Machine: " in done.stdout
    assert done.stdout.count("\n#### ") == len(SCENARIOS)


def test_an_unknown_scenario_is_named(capsys):
    assert main(["bench", "--smoke", "--scenarios", "overhead,nope"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("camcap: error: Unknown scenario nope, expected some of: overhead, transports")


def test_options_refuse_nonsense():
    settings = Settings(model="random:blip-tiny")
    with pytest.raises(ValueError, match="pairs must be at least 1"):
        BenchOptions.smoke(settings, pairs=0)
    with pytest.raises(ValueError, match="Invalid detail"):
        BenchOptions.smoke(settings, details=("ultra",))
    fixed = BenchOptions(settings=settings, new_tokens=7).model_settings
    assert fixed.min_new_tokens == fixed.max_new_tokens == 7
    assert fixed.open_browser is False


def test_report_renders_tables_and_unmeasurable_goals():
    result = ScenarioResult(
        "streams",
        "Streams",
        Table(["streams", "captions/s"], [[1, 0.5], [4, None]]),
        {"runs": []},
        [Goal("4 streams >= 2 x one on a GPU", "1.3 x on cpu", None)],
        ["a note"],
    )
    machine = {
        "cpu": "CPU",
        "cpu_count": 2,
        "usable_cores": 2,
        "torch_threads": 2,
        "gpus": [],
        "platform": "Linux",
        "python": "3.11",
        "device_summary": "CPU (2 cores)",
    }
    report = BenchReport(
        command="camcap bench",
        date="2026-01-01T00:00:00Z",
        machine=machine,
        versions={"torch": "2.13.0"},
        model={"name": "random:blip-tiny", "new_tokens": 3, "device": "cpu", "dtype": "float32"},
        options={},
        scenarios={"streams": result},
    )
    text = report.text()
    assert "NOT MEASURABLE HERE 4 streams >= 2 x one on a GPU: 1.3 x on cpu" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["1", "0.500"] in rows and ["4", "-"] in rows  # None renders as a dash
    markdown = report.markdown()
    assert "| streams | captions/s |\n|---|---|\n| 1 | 0.500 |\n| 4 | - |" in markdown
    assert "GPU: none" in markdown
    assert not math.isnan(json.loads(json.dumps(report.to_dict()))["scenarios"]["streams"]["table"]["rows"][0][1])
