"""The per-rank view of tensor-parallel runs, side by side: for each rank (and the slowest
rank per step) its gap statistics in every run, and the last run's over the first's.

`stepgap run`, `compare` and the report show these rows for runs with per-rank summary keys
(stepgap.rank_metrics); runs at TP 1 have none, and nothing changes for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stepgap.metric_registry import BY_KEY, Metric
from stepgap.rank_metrics import SLOWEST, rank_key, views
from stepgap.runs import RunData
from stepgap.summary_view import ratio

RANK_METRICS = ("gap_p50_us", "gap_p99_us", "gap_mean_us", "gap_max_us", "idle_fraction")
SLOWEST_LABEL = "slowest rank, per step"
EXPLANATION = (
    "Each rank times its own steps on its own device clock; rank 0's figures are the run's "
    "headline ones. A step needs every rank, so the slowest rank's gap gates it: "
    "'slowest rank, per step' takes each step's largest gap over the ranks, then the same "
    "statistics over the same decode steps after warm-up (its idle fraction is the most idle "
    "rank's)."
)


@dataclass(frozen=True)
class RankRow:
    """One rank's (or the slowest's) value of one gap metric in each run."""

    view: int | str  # a rank, or "slowest"
    metric: Metric
    values: tuple[Any, ...]  # per run, in the runs' order

    @property
    def label(self) -> str:
        return SLOWEST_LABEL if self.view == SLOWEST else f"rank {self.view}"

    @property
    def key(self) -> str:
        return rank_key(self.view, self.metric.key)

    @property
    def ratio(self) -> float:
        """Last run over first (NaN with one run)."""
        return ratio(self.values[-1], self.values[0]) if len(self.values) > 1 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "ratio": self.ratio, "unit": self.metric.unit}


def rank_views(runs: list[RunData]) -> list[int | str]:
    """Every rank any of the runs has figures of (then "slowest"), in order."""
    return views({key for run in runs for key in run.summary})


def rank_rows(runs: list[RunData]) -> list[RankRow]:
    """Rows by rank, then metric; empty when no run is tensor-parallel."""
    rows = []
    for view in rank_views(runs):
        for key in RANK_METRICS:
            values = tuple(_value(run, rank_key(view, key)) for run in runs)
            rows.append(RankRow(view, BY_KEY[key], values))
    return rows


def _value(run: RunData, key: str) -> Any:
    value = run.summary.get(key)
    return math.nan if value is None else value


def rows_dict(rows: list[RankRow]) -> dict[str, dict[str, Any]]:
    """JSON form: summary key -> values and ratio."""
    return {row.key: row.to_dict() for row in rows}
