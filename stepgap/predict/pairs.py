"""A sync run and an overlap run of one workload: the prediction checked against the
measurement, as the gate's `predict.*` facts and the report's section read it.

The floor is the overlap run's own median decode gap (the device's figure, measured where
it can be): these checks judge the rest of the model — host phases, the scheduler's
replay, the device coupling — not the floor. (`benchmarks/predict_validation.py` measures
the floor on a separate run instead.)
"""

from __future__ import annotations

from dataclasses import dataclass

from stepgap.predict.floor import floor_from_run
from stepgap.predict.prediction import Prediction, predict_overlap
from stepgap.predict.validate import MetricError, errors
from stepgap.runs import RunData


@dataclass(frozen=True)
class CheckedPrediction:
    """A prediction from a sync run and its errors against the overlap run."""

    prediction: Prediction
    errors: tuple[MetricError, ...]

    def error(self, key: str) -> MetricError:
        return next(row for row in self.errors if row.key == key)


def check_pair(sync: RunData, overlap: RunData) -> CheckedPrediction:
    """Predict `overlap` from `sync` (floor: `overlap`'s) and compare (PredictError when
    either cannot be used)."""
    prediction = predict_overlap(sync, floor_from_run(overlap))
    return CheckedPrediction(prediction, errors(prediction, overlap))
