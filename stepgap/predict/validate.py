"""A prediction against a measured overlap run: predicted vs measured, relative errors.

The relative error of a figure is predicted / measured - 1 (positive: the prediction is
higher). The figures validated are those the overlap schedule is for: output
throughput, TPOT p50, ITL p50, TTFT p50, gap p50, idle fraction and wall time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stepgap.metric_registry import BY_KEY
from stepgap.predict.errors import PredictError, with_article
from stepgap.predict.inputs import run_label
from stepgap.predict.prediction import Prediction
from stepgap.runs import RunData
from stepgap.summary_view import ratio

VALIDATED_KEYS = (
    "output_throughput",
    "median_tpot_ms",
    "median_itl_ms",
    "median_ttft_ms",
    "gap_p50_us",
    "idle_fraction",
    "duration",
)


@dataclass(frozen=True)
class MetricError:
    """One figure: the sync run's, the predicted overlap one, the measured overlap one."""

    key: str
    sync: float
    predicted: float
    measured: float

    @property
    def label(self) -> str:
        metric = BY_KEY.get(self.key)
        return metric.label if metric else self.key

    @property
    def relative_error(self) -> float:
        """predicted / measured - 1; NaN when either is missing or measured is 0."""
        return ratio(self.predicted, self.measured) - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "sync": self.sync,
            "predicted": self.predicted,
            "measured": self.measured,
            "relative_error": self.relative_error,
        }


def check_against(run: RunData, prediction: Prediction) -> None:
    """`run` must be a complete overlap run of the same workload as the sync run."""
    where = run_label(run)
    if run.mode != "overlap":
        raise PredictError(
            f"--against takes an overlap run; {where} is {with_article(run.mode)} run"
        )
    if not run.complete:
        reason = run.meta.get("incomplete_reason", "unknown reason")
        raise PredictError(f"--against: {where} is incomplete ({reason})")
    ours, theirs = prediction.sync.get("num_requests"), run.summary.get("num_requests")
    if ours != theirs:
        raise PredictError(
            f"--against: {where} served {theirs} requests, the sync run {ours}: "
            "not the same workload"
        )


def errors(prediction: Prediction, measured: RunData) -> tuple[MetricError, ...]:
    """Predicted vs measured for each validated figure."""
    check_against(measured, prediction)
    return tuple(
        MetricError(
            key,
            _number(prediction.sync.get(key)),
            _number(prediction.predicted.get(key)),
            _number(measured.summary.get(key)),
        )
        for key in VALIDATED_KEYS
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
