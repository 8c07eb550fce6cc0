"""The report's "Predicted vs measured" section: for each workload with a sync and an
overlap run, the overlap run as `stepgap predict` foretold it from the sync run, beside
the measured one (stepgap.predict.pairs); absent when no workload has both."""

from __future__ import annotations

import math
from collections.abc import Sequence

from stepgap.predict.errors import PredictError
from stepgap.predict.pairs import CheckedPrediction, check_pair
from stepgap.report import html
from stepgap.report.tables import workload_label
from stepgap.runs import RunData

Runs = Sequence[tuple[str, RunData]]  # (label, run) in report order
EXPLANATION = (
    "Predicted: the sync run's steps replayed under the overlap schedule's rules (the host "
    "launches step N+1, then waits for and post-processes N; the device starts N+1 at the "
    "later of the end of N plus the floor and its launch), each step costing a measured "
    "sync step of its shape; the floor is the overlap run's median gap. Error: predicted / "
    "measured - 1. `stepgap predict SYNC --against OVERLAP` prints the same."
)


def pairs(runs: Runs) -> list[tuple[str, RunData, RunData]]:
    """(workload, sync run, overlap run): the first of each mode per workload."""
    found: dict[str, dict[str, RunData]] = {}
    for _, run in runs:
        found.setdefault(workload_label(run), {}).setdefault(run.mode, run)
    return [
        (workload, modes["sync"], modes["overlap"])
        for workload, modes in found.items()
        if "sync" in modes and "overlap" in modes
    ]


def _cell(value: float, key: str) -> str:
    if math.isnan(value):
        return "—"
    if key == "idle_fraction":
        return f"{value:.2%}"
    return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _table(checked: CheckedPrediction) -> str:
    rows, classes = [], []
    for row in checked.errors:
        error = row.relative_error
        shown = "—" if math.isnan(error) else f"{error:+.1%}"
        rows.append(
            [
                row.label,
                *(_cell(v, row.key) for v in (row.sync, row.predicted, row.measured)),
                shown,
            ]
        )
        classes.append(["", "", "", "", "worse" if abs(error) > 0.1 else ""])
    heads = ["metric", "sync (measured)", "overlap predicted", "overlap measured", "error"]
    notes = "".join(html.note(note) for note in checked.prediction.notes)
    return html.table(heads, rows, classes) + notes


def predict_section(runs: Runs) -> str:
    """One table per workload that has a sync and an overlap run."""
    parts = []
    for workload, sync, overlap in pairs(runs):
        parts.append(html.paragraph(workload))
        try:
            parts.append(_table(check_pair(sync, overlap)))
        except PredictError as error:
            parts.append(html.note(f"No prediction: {error}"))
    if not parts:
        return ""
    return html.section(
        "Predicted vs measured", "".join(parts) + html.note(EXPLANATION), "predicted"
    )
