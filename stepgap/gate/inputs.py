"""What a gate reads: the run under test (one mode or a `--mode both` group) and a baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepgap.runs import RunData, load_runs, mode_order


class GateInputError(ValueError):
    """A rule asks for something the runs cannot give: an unknown metric, a missing mode."""


@dataclass(frozen=True)
class GateInputs:
    """The runs of the run under test and of the baseline, keyed by mode, and named extra
    files for fact sources (`--attach verify=verdict.json` gives attachments["verify"])."""

    run_path: Path
    runs: dict[str, RunData]
    baseline_path: Path | None = None
    baseline: dict[str, RunData] | None = None
    attachments: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.runs:
            raise GateInputError(f"{self.run_path} holds no run")
        if (self.baseline is None) != (self.baseline_path is None):
            raise GateInputError("a baseline needs both its path and its runs")

    @property
    def modes(self) -> list[str]:
        """The run's modes, sync before overlap, then any others by name."""
        return _ordered(self.runs)

    def mode_run(self, mode: str, subject: str) -> RunData:
        if mode not in self.runs:
            raise GateInputError(
                f"{subject}: the run has no mode {mode!r} (it has: {', '.join(self.modes)})"
            )
        return self.runs[mode]

    def baseline_run(self, mode: str, subject: str) -> RunData:
        if self.baseline is None:
            raise GateInputError(f"{subject} compares with a baseline: pass --baseline RUN")
        if mode not in self.baseline:
            have = ", ".join(_ordered(self.baseline))
            raise GateInputError(
                f"{subject}: baseline {self.baseline_path} has no {mode} run (it has: {have})"
            )
        return self.baseline[mode]

    def attachment(self, name: str, subject: str) -> Path:
        """The file attached as `name`; a GateInputError naming the option when there is none."""
        if name not in self.attachments:
            raise GateInputError(f"{subject} reads a {name} file: pass --attach {name}=FILE")
        path = self.attachments[name]
        if not path.is_file():
            raise GateInputError(f"{subject}: attached {name} file {path} does not exist")
        return path

    def summary_metrics(self) -> list[str]:
        """Numeric summary metrics of the run's modes (what rules may name)."""
        names = {
            key
            for run in self.runs.values()
            for key, value in run.summary.items()
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        }
        return sorted(names)


def metric_value(run: RunData, metric: str) -> float:
    """A numeric summary metric; NaN when the run stored no value (JSON null)."""
    value: Any = run.summary.get(metric)
    if value is None:
        return math.nan
    return float(value)


def _ordered(runs: dict[str, RunData]) -> list[str]:
    return sorted(runs, key=mode_order)


def _by_mode(runs: list[RunData], path: Path) -> dict[str, RunData]:
    by_mode: dict[str, RunData] = {}
    for run in runs:
        if run.mode in by_mode:
            raise GateInputError(f"{path} holds two {run.mode} runs; a gate needs one per mode")
        by_mode[run.mode] = run
    return by_mode


def load_inputs(
    run_path: str | Path,
    baseline_path: str | Path | None = None,
    attachments: Mapping[str, Path] | None = None,
) -> GateInputs:
    """Load the run (a run directory or a group of them), the optional baseline, and note
    the attached files (read later, by the facts that need them).

    Incomplete runs are refused (stepgap.runs.RunError): a gate on a truncated run would
    judge numbers the workload never finished producing.
    """
    run_path = Path(run_path)
    attached = {name: Path(path) for name, path in (attachments or {}).items()}
    runs = _by_mode(load_runs(run_path, require_complete=True), run_path)
    if baseline_path is None:
        return GateInputs(run_path, runs, attachments=attached)
    baseline_path = Path(baseline_path)
    baseline = _by_mode(load_runs(baseline_path, require_complete=True), baseline_path)
    return GateInputs(run_path, runs, baseline_path, baseline, attached)


def parse_attachments(items: list[str]) -> dict[str, Path]:
    """`NAME=FILE` items (the --attach option) as a mapping; GateInputError when malformed."""
    attached: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise GateInputError(f"--attach takes NAME=FILE, got {item!r}")
        if name.strip() in attached:
            raise GateInputError(f"--attach {name.strip()} given twice")
        attached[name.strip()] = Path(path.strip())
    return attached
