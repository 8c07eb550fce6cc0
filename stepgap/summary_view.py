"""Which summary metrics to show side by side, their ratios between runs, and whether a
ratio stands out of the runs' noise. The metrics and their directions come from
`stepgap.metric_registry`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stepgap.metric_registry import Direction, Metric, headline
from stepgap.ratio_noise import RatioInterval, ratio_interval
from stepgap.runs import RunData

CHANGE_THRESHOLD = 0.01  # ratios within 1 % of 1 read as unchanged


def ratio(b: Any, a: Any) -> float:
    """b / a for numbers, NaN where undefined."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    if math.isnan(a) or math.isnan(b) or a == 0:
        return math.nan
    return b / a


def ratio_verdict(better: str | None, value: float) -> str:
    """'better', 'worse' or '' (no direction, or within 1 % of even) for a ratio B/A read
    by the metric's direction (`Direction.better`)."""
    if better is None or math.isnan(value) or abs(value - 1.0) < CHANGE_THRESHOLD:
        return ""
    improved = value < 1.0 if better == "lower" else value > 1.0
    return "better" if improved else "worse"


@dataclass(frozen=True)
class MetricRatio:
    """One headline metric of runs A and B: values, B/A, its noise interval and reading."""

    metric: Metric
    a: Any
    b: Any
    ratio: float
    noise: RatioInterval | None

    @property
    def reading(self) -> str:
        """'better', 'worse', 'within noise' or '' (no direction, or no change)."""
        if self.metric.direction is Direction.NEUTRAL or math.isnan(self.ratio):
            return ""
        if self.noise is not None and self.noise.within_noise:
            return "within noise"
        return ratio_verdict(self.metric.direction.better, self.ratio)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "ratio": self.ratio,
            "noise": self.noise.to_dict() if self.noise else None,
            "reading": self.reading,
            "unit": self.metric.unit,
            "better": self.metric.direction.better,
        }


def compare_metrics(a: RunData, b: RunData) -> list[MetricRatio]:
    """Every headline metric of A and B with B/A and its noise interval."""
    rows = []
    for metric in headline():
        value_a, value_b = a.summary.get(metric.key), b.summary.get(metric.key)
        value = ratio(value_b, value_a)
        noise = ratio_interval(a, b, metric.key, value) if metric.noise else None
        rows.append(MetricRatio(metric, value_a, value_b, value, noise))
    return rows
