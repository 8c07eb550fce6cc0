"""What `stepgap run` prints: the overlap/sync table with noise intervals, token identity
and what bounds the numbers; or the same as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepgap.cli.common import console, labelled, plain, table
from stepgap.cli.ratio_table import NOISE_NOTE, ratio_table
from stepgap.identity import Identity, run_identity
from stepgap.metric_registry import headline
from stepgap.metrics import arrival_wait_share
from stepgap.rank_view import EXPLANATION, rank_rows, rows_dict
from stepgap.runs import RunData
from stepgap.summary_view import MetricRatio, compare_metrics

ARRIVAL_BOUND_SHARE = 0.05


def _saved_at(runs: list[RunData]) -> Path | None:
    path = runs[0].path if runs else None
    return path.parent if path is not None and len(runs) > 1 else path


def _identity(runs: list[RunData]) -> Identity | None:
    if len(runs) != 2:
        return None
    a, b = runs
    return run_identity(a, b)


def _ratios(runs: list[RunData]) -> list[MetricRatio]:
    return compare_metrics(runs[0], runs[1]) if len(runs) == 2 else []


def arrival_note(runs: list[RunData]) -> str | None:
    """A warning when the device waited for arrivals long enough to pace the throughput."""
    share = max((arrival_wait_share(run.steps) for run in runs), default=0.0)
    if share < ARRIVAL_BOUND_SHARE:
        return None
    return (
        f"throughput is arrival-bound: the device waited {share:.0%} of the run for requests "
        "to arrive, so throughput and its ratio measure the arrival clock more than the engine"
    )


def report_json(runs: list[RunData]) -> dict[str, Any]:
    identity = _identity(runs)
    return {
        "out": str(_saved_at(runs)),
        "workload": runs[0].meta["workload"],
        "device": runs[0].meta["environment"]["device"],
        "runs": {r.mode: {"summary": r.summary, "complete": r.complete} for r in runs},
        "ratios": {row.metric.key: row.to_dict() for row in _ratios(runs)},
        "tokens_identical": identity.identical if identity else None,
        "identity": identity.to_dict() if identity else None,
        "ranks": rows_dict(rank_rows(runs)),
        "notes": [note for note in [arrival_note(runs)] if note],
    }


def print_report(runs: list[RunData]) -> None:
    label = runs[0].meta["workload"]["label"]
    device = runs[0].meta["environment"]["device"]["name"]
    title = f"{label} on {device}"
    if len(runs) == 2:
        names = (runs[0].mode, runs[1].mode)
        console.print(ratio_table(title, names, f"{names[1]}/{names[0]}", _ratios(runs)))
        console.print(plain(NOISE_NOTE), style="dim")
    else:
        rows = [[m.label, runs[0].summary.get(m.key)] for m in headline()]
        console.print(table(title, ["metric", runs[0].mode], rows))
    _print_ranks(runs, title)
    note = arrival_note(runs)
    if note:
        console.print(labelled("note", "yellow", note))
    identity = _identity(runs)
    if identity is not None:
        text = "identical" if identity.identical else identity.describe()
        console.print(labelled("tokens", "", text), style="green" if identity.identical else "red")
    console.print(labelled("saved", "", str(_saved_at(runs))))


def _print_ranks(runs: list[RunData], title: str) -> None:
    """Tensor-parallel runs: each rank's gaps, and the slowest rank's per step."""
    from stepgap.cli.rank_table import rank_table

    rows = rank_rows(runs)
    if not rows:
        return
    names = tuple(run.mode for run in runs)
    ratio_name = f"{names[-1]}/{names[0]}"
    console.print(rank_table(f"{title}: per rank", names, ratio_name, rows))
    console.print(plain(EXPLANATION), style="dim")
