"""Compare two runs: headline metrics with B/A ratios and their noise intervals, and token
identity (a divergence classified only when the runs could have agreed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepgap.identity import NEAR_TIE_LOGIT_MARGIN, Identity, run_identity
from stepgap.premise import premise_differences
from stepgap.rank_view import RankRow, rank_rows, rows_dict
from stepgap.runs import MODE_ORDER, RunData, RunError, load_runs, mode_order
from stepgap.summary_view import MetricRatio, compare_metrics


@dataclass(frozen=True)
class Comparison:
    """Run B against run A."""

    names: tuple[str, str]
    rows: list[MetricRatio]
    identity: Identity | None  # None when neither run recorded tokens (analyzed traces)
    warnings: list[str]
    ranks: list[RankRow] = field(default_factory=list)  # tensor parallel: gaps per rank

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.names[0],
            "b": self.names[1],
            "metrics": {row.metric.key: row.to_dict() for row in self.rows},
            "tokens_identical": self.identity.identical if self.identity else None,
            "identity": self.identity.to_dict() if self.identity else None,
            "ranks": rows_dict(self.ranks),
            "warnings": self.warnings,
        }


def compare_run_data(a: RunData, b: RunData, near_tie: float = NEAR_TIE_LOGIT_MARGIN) -> Comparison:
    warnings = []
    if a.meta.get("workload", {}).get("label") != b.meta.get("workload", {}).get("label"):
        warnings.append("the runs are of different workloads; ratios compare unlike things")
    for run in (a, b):
        if not run.complete:
            warnings.append(f"{run.name} is incomplete ({run.meta.get('incomplete_reason')})")
    identity = None
    if a.tokens or b.tokens:
        differences = premise_differences(a.meta, b.meta)
        identity = run_identity(a, b, near_tie, differences)
    rows = compare_metrics(a, b)
    return Comparison((a.name, b.name), rows, identity, warnings, rank_rows([a, b]))


def run_pairs(path_a: Path, path_b: Path | None) -> list[tuple[RunData, RunData]]:
    """The (A, B) pairs two paths stand for: two runs; two groups, mode by mode; a group
    and a run, the group's run of that mode; one group alone, its sync against overlap."""
    runs_a = _by_mode(path_a)
    if path_b is None:
        if not set(MODE_ORDER) <= set(runs_a):
            raise RunError(f"{path_a} is not a sync+overlap group: give a second run to compare")
        return [(runs_a["sync"], runs_a["overlap"])]
    runs_b = _by_mode(path_b)
    if len(runs_a) == 1 and len(runs_b) == 1:
        return [(next(iter(runs_a.values())), next(iter(runs_b.values())))]
    common = [mode for mode in _ordered(runs_a) if mode in runs_b]
    if not common:
        raise RunError(
            f"{path_a} ({', '.join(runs_a)}) and {path_b} ({', '.join(runs_b)}) share no mode"
        )
    return [(runs_a[mode], runs_b[mode]) for mode in common]


def _by_mode(path: Path) -> dict[str, RunData]:
    runs = load_runs(path)
    by_mode = {run.mode: run for run in runs}
    if len(by_mode) < len(runs):
        raise RunError(f"{path} holds two runs of one mode: name the run directory to compare")
    return by_mode


def _ordered(runs: dict[str, RunData]) -> list[str]:
    return sorted(runs, key=mode_order)


def compare_runs(
    path_a: Path, path_b: Path | None, near_tie: float = NEAR_TIE_LOGIT_MARGIN
) -> list[Comparison]:
    """Load and compare run (or group) directories: one Comparison per pair of runs."""
    return [compare_run_data(a, b, near_tie) for a, b in run_pairs(path_a, path_b)]
