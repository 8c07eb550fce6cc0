"""The side-by-side table of `run` and `compare`: two runs' headline metrics, B/A, the
ratio's noise interval and what it reads as (better, worse, within noise)."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text

from stepgap.cli.common import fmt, table
from stepgap.ratio_noise import NOISE_NOTE
from stepgap.summary_view import MetricRatio

__all__ = ["NOISE_NOTE", "ratio_table"]

READING_STYLE = {"better": "green", "worse": "red", "within noise": "yellow"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _noise_cell(row: MetricRatio) -> str:
    if row.noise is None:
        return "—"
    return row.noise.describe(mark_proxy=True)


def ratio_table(
    title: str, names: tuple[str, str], ratio_name: str, rows: list[MetricRatio]
) -> Table:
    """Rows of metrics either run has; `ratio_name` heads the B/A column (`overlap/sync`)."""
    header = ["metric", *names, ratio_name, "95% noise", "reading"]
    body = []
    for row in rows:
        if _missing(row.a) and _missing(row.b):
            continue
        reading = Text(row.reading, style=READING_STYLE.get(row.reading, ""))
        body.append([row.metric.label, row.a, row.b, fmt(row.ratio), _noise_cell(row), reading])
    return table(title, header, body)
