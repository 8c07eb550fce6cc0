"""The report's per-rank section for tensor-parallel runs: each rank's gaps and the slowest
rank's per step, a row per run and rank (stepgap.rank_view); absent at TP 1."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stepgap.metric_registry import BY_KEY
from stepgap.rank_metrics import SLOWEST, rank_key
from stepgap.rank_view import EXPLANATION, SLOWEST_LABEL, rank_views
from stepgap.report import html
from stepgap.report.idle_sections import fmt_us
from stepgap.runs import RunData

Runs = Sequence[tuple[str, RunData]]  # (label, run) in report order
COLUMN_KEYS = (
    "gap_samples",
    "gap_p50_us",
    "gap_p90_us",
    "gap_p99_us",
    "gap_mean_us",
    "gap_max_us",
    "idle_fraction",
)
COLUMNS = [(key, BY_KEY[key].label) for key in COLUMN_KEYS]


def _cell(value: Any, key: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return "—"
    if key == "gap_samples":
        return f"{int(value):,}"
    return f"{value:.2%}" if key == "idle_fraction" else fmt_us(float(value))


def rank_section(runs: Runs) -> str:
    """A row per rank (then the slowest rank per step) of every tensor-parallel run."""
    parallel = [(label, run) for label, run in runs if rank_views([run])]
    if not parallel:
        return ""
    header = ["run", "rank", *(name for _, name in COLUMNS)]
    cells = []
    for label, run in parallel:
        for view in rank_views([run]):
            name = SLOWEST_LABEL if view == SLOWEST else str(view)
            values = [_cell(run.summary.get(rank_key(view, key)), key) for key, _ in COLUMNS]
            cells.append([label, name, *values])
    body = html.table(header, cells, css_class="ranks") + html.note(EXPLANATION)
    return html.section("Per rank (tensor parallel)", body, "ranks")
