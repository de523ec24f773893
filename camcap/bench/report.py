"""What `camcap bench` produces: typed results, rendered as a table, JSON or markdown.

Each scenario returns a `ScenarioResult`: a table for people, a `data` dict with every number
for the JSON, and `Goal` checks against issue 6's targets. A goal this machine cannot judge (a
GPU goal measured on a CPU) says so with `met=None`: the report never claims what it did not
measure.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Goal:
    """One of the issue's targets and what this run says about it."""

    goal: str  # the target, in words
    measured: str  # what was measured, with the number
    met: bool | None  # None: not measurable in this run (e.g. a GPU goal on a CPU)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


@dataclass
class ScenarioResult:
    name: str
    title: str
    table: Table
    data: dict[str, Any]
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the scenario failed: why (its table is then empty)


@dataclass
class BenchReport:
    """A whole `camcap bench` run: where, when, what, and every scenario's result."""

    command: str
    date: str
    machine: dict[str, Any]
    versions: dict[str, str | None]
    model: dict[str, Any]
    options: dict[str, Any]
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        """Scenarios that did not finish."""
        return [name for name, result in self.scenarios.items() if result.error is not None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")

    def text(self) -> str:
        """Plain-text tables for a terminal."""
        lines = [f"camcap bench: {self.model.get('name')} on {self.machine.get('device_summary')}, {self.date}"]
        for result in self.scenarios.values():
            if result.error is not None:
                lines += ["", f"== {result.title}: FAILED: {result.error}"]
                continue
            lines += ["", f"== {result.title} ({result.seconds:.0f} s)", _text_table(result.table)]
            lines += [f"  goal: {_mark(goal.met)} {goal.goal}: {goal.measured}" for goal in result.goals]
            lines += [f"  note: {note}" for note in result.notes]
        lines.append(f"\ntotal {self.seconds:.0f} s")
        return "\n".join(lines)

    def markdown(self) -> str:
        """A section ready to paste into docs/benchmarks.md."""
        m = self.machine
        gpu = ", ".join(m["gpus"]) if m["gpus"] else "none"
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items() if version)
        lines = [
            f"### {self.model.get('name')}, {self.model.get('new_tokens')} new tokens, "
            f"{self.model.get('device')} {self.model.get('dtype')} ({self.date[:10]})",
            "",
            "```",
            self.command,
            "```",
            "",
            f"- Machine: {m['cpu']}, {m['cpu_count']} logical cores ({m['usable_cores']} usable), "
            f"torch threads {m['torch_threads']}; GPU: {gpu}; {m['platform']}",
            f"- Versions: Python {m['python']}, {versions}",
            f"- Model: {self.model.get('name')} (input size {self.model.get('input_size')} px, "
            f"max batch {self.model.get('max_batch')}), {self.model.get('new_tokens')} new tokens per caption"
            f"{', torch.compile' if self.model.get('compile') else ''}",
            f"- Date: {self.date}; the run took {self.seconds:.0f} s",
        ]
        for result in self.scenarios.values():
            if result.error is not None:
                lines += ["", f"#### {result.title}", "", f"Failed: {result.error}"]
                continue
            lines += ["", f"#### {result.title}", "", _markdown_table(result.table)]
            if result.goals:
                lines.append("")
                lines += [f"- {_mark(goal.met)} **{goal.goal}**: {goal.measured}" for goal in result.goals]
            if result.notes:
                lines.append("")
                lines += [f"- {note}" for note in result.notes]
        return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, GPUs and the platform: what a reader needs to compare numbers."""
    from camcap.doctor import torch_facts

    torch = torch_facts()
    gpus = [f"{gpu.name} ({gpu.memory_gb:.0f} GB)" for gpu in torch.gpus]
    cpu = _cpu_model()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": _torch_threads(),
        "gpus": gpus,
        "cuda": torch.cuda,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device_summary": gpus[0] if gpus else f"{cpu} ({usable} cores)",
    }


def versions() -> dict[str, str | None]:
    return {name: _version(name) for name in ("camcap", "torch", "transformers", "uvicorn", "websockets")}


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def command_line() -> str:
    """How this run was started, as a user would type it."""
    if sys.argv and Path(sys.argv[0]).name in ("camcap", "__main__.py"):
        return "camcap " + shlex.join(sys.argv[1:])
    return shlex.join(sys.argv)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_threads() -> int | None:
    try:
        import torch  # CPU timings depend on it; the doctor's facts do not include it
    except ImportError:
        return None
    return int(torch.get_num_threads())


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _mark(met: bool | None) -> str:
    return {True: "MET", False: "NOT MET", None: "NOT MEASURABLE HERE"}[met]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        if abs(value) < 1:
            return f"{value:.3f}"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _text_table(table: Table) -> str:
    cells = [table.columns] + [[_cell(value) for value in row] for row in table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    return "\n".join(
        "  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells
    )


def _markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in table.rows]
    return "\n".join(lines)
