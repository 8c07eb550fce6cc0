"""The per-rank table of `run` and `compare` for tensor-parallel runs (stepgap.rank_view)."""

from __future__ import annotations

from rich.table import Table

from stepgap.cli.common import fmt, table
from stepgap.rank_view import RankRow


def rank_table(title: str, names: tuple[str, ...], ratio_name: str, rows: list[RankRow]) -> Table:
    """A row per rank and gap metric, a column per run (and the last over the first)."""
    ratios = len(names) > 1
    header = ["rank", "metric", *names, *([ratio_name] if ratios else [])]
    body = []
    for row in rows:
        ratio = [fmt(row.ratio)] if ratios else []
        body.append([row.label, row.metric.label, *row.values, *ratio])
    return table(title, header, body)
