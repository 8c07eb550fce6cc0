"""Compare two runs: headline metrics with ratios, and token identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepgap.identity import NEAR_TIE_LOGIT_MARGIN, Identity, compare_tokens
from stepgap.runs import RunData, load_run
from stepgap.summary_view import HEADLINE, ratio


@dataclass
class Comparison:
    names: tuple[str, str]
    rows: list[dict[str, Any]]
    identity: Identity | None  # None when neither run recorded tokens (analyzed traces)
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.names[0],
            "b": self.names[1],
            "metrics": {r["metric"]: {k: r[k] for k in ("a", "b", "ratio")} for r in self.rows},
            "tokens_identical": self.identity.identical if self.identity else None,
            "identity": self.identity.to_dict() if self.identity else None,
            "warnings": self.warnings,
        }


def compare_run_data(a: RunData, b: RunData, near_tie: float = NEAR_TIE_LOGIT_MARGIN) -> Comparison:
    rows = [
        {
            "metric": key,
            "label": label,
            "a": a.summary.get(key),
            "b": b.summary.get(key),
            "ratio": ratio(b.summary.get(key), a.summary.get(key)),
        }
        for key, label, _ in HEADLINE
    ]
    warnings = []
    if a.meta.get("workload", {}).get("label") != b.meta.get("workload", {}).get("label"):
        warnings.append("the runs are of different workloads; ratios compare unlike things")
    for run in (a, b):
        if not run.complete:
            warnings.append(f"{run.name} is incomplete ({run.meta.get('incomplete_reason')})")
    identity = None
    if a.tokens or b.tokens:
        identity = compare_tokens(a.tokens, b.tokens, a.margins, b.margins, near_tie)
    return Comparison((a.name, b.name), rows, identity, warnings)


def compare_runs(path_a: Path, path_b: Path, near_tie: float = NEAR_TIE_LOGIT_MARGIN) -> Comparison:
    """Load and compare two run directories."""
    return compare_run_data(load_run(path_a), load_run(path_b), near_tie)
