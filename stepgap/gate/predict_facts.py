"""`predict.*` facts: how far `stepgap predict` missed a group's measured overlap run.

On a `--mode both` group (a sync and an overlap run), `predict.throughput_error` is
|predicted / measured - 1| of the overlap run's output throughput, predicted from the sync
run (stepgap.predict.pairs: the floor is the overlap run's own median gap); likewise
`predict.tpot_p50_error`, `predict.itl_p50_error`, `predict.ttft_p50_error`,
`predict.gap_p50_error`, `predict.idle_fraction_error` and `predict.duration_error`.
A fraction: `predict.throughput_error <= 0.05` allows 5 %. A run without both modes, or
whose sync run cannot be predicted from (no host phases), is bad input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from stepgap.gate.facts import Fact, FactValue, register_fact
from stepgap.gate.inputs import GateInputError, GateInputs
from stepgap.predict.errors import PredictError

if TYPE_CHECKING:
    from stepgap.predict.pairs import CheckedPrediction
    from stepgap.runs import RunData

ERROR_FACTS = {  # fact name -> summary key
    "predict.throughput_error": "output_throughput",
    "predict.tpot_p50_error": "median_tpot_ms",
    "predict.itl_p50_error": "median_itl_ms",
    "predict.ttft_p50_error": "median_ttft_ms",
    "predict.gap_p50_error": "gap_p50_us",
    "predict.idle_fraction_error": "idle_fraction",
    "predict.duration_error": "duration",
}
_last: list[tuple[RunData, RunData, CheckedPrediction]] = []  # the facts share a prediction


def _pair(inputs: GateInputs, name: str) -> CheckedPrediction:
    from stepgap.predict.pairs import check_pair

    if "sync" not in inputs.runs or "overlap" not in inputs.runs:
        raise GateInputError(
            f"{name} checks a prediction from a group's sync run against its overlap run; "
            f"{inputs.run_path} has {', '.join(inputs.modes)}"
        )
    sync, overlap = inputs.runs["sync"], inputs.runs["overlap"]
    if not _last or _last[0][0] is not sync or _last[0][1] is not overlap:
        try:
            checked = check_pair(sync, overlap)
        except PredictError as error:
            raise GateInputError(f"{name}: {error}") from None
        _last[:] = [(sync, overlap, checked)]
    return _last[0][2]


def _measure(name: str, key: str) -> Callable[[GateInputs], FactValue]:
    def measure(inputs: GateInputs) -> FactValue:
        row = _pair(inputs, name).error(key)
        value = abs(row.relative_error)
        detail = (
            f"{row.label}: predicted {row.predicted:.6g}, measured {row.measured:.6g} "
            f"({row.relative_error:+.1%})"
        )
        return FactValue(math.nan if math.isnan(value) else value, detail)

    return measure


for _name, _key in ERROR_FACTS.items():
    register_fact(
        Fact(
            _name,
            f"|relative error| of the overlap run's {_key} as `stepgap predict` foretold it "
            "from the sync run",
            _measure(_name, _key),
        )
    )
