"""What overlap could buy a foreign engine, from its `stepgap analyze` run directory.

An analyzed trace has each step's device interval and the gap before it, per rank,
device and stream, but no requests (so no TTFT, TPOT or throughput) and no host phases:
`steps.csv` keeps each step's host range and first launch, and one cause label per gap;
the split of each gap into host ranges, launch latency and blocking waits is in run.json
only as totals (`gap_causes`). So:

- the bound (any trace): every between-step gap removed. The device span shrinks to the
  span minus the gaps; a steady decode loop's step rate (and so its token throughput)
  rises by span / (span - gaps), at most.
- the replay (a trace analysed with `--mode sync`): each sync gap taken as host work the
  overlap schedule moves behind the previous step (the model's overlap rules with
  `prepare_host_us` = the gap, nothing else on the host, the floor between steps). It is
  tighter than the bound only where a gap is longer than the step before it (the host,
  not the device, sets the pace). It is still an upper bound on the gain: the part of a
  gap that is launch latency (which overlap cannot hide) is not known per step.

What is missing for a full prediction: per-step host phase times (what the host did
before the launch vs after the wait) and per-step launch latency, and the requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stepgap.predict.errors import PredictError
from stepgap.predict.floor import Floor
from stepgap.predict.inputs import run_label
from stepgap.predict.model import DeviceModel, Schedule, StepCost, replay
from stepgap.runs import RunData

GROUP_KEYS = ("rank", "device", "stream")
MISSING = (
    "per-step host phases (host work before the launch vs after the wait) and per-step "
    "launch latency: `stepgap analyze` keeps one cause label per gap and the causes' "
    "totals only; and requests, so no TTFT, TPOT or throughput"
)


@dataclass(frozen=True)
class GroupPrediction:
    """One rank/device/stream's measured span and gaps, and the predicted span."""

    group: str
    steps: int
    span_us: float
    gap_total_us: float
    bound_span_us: float  # every between-step gap removed
    replay_span_us: float | None  # the overlap replay (sync traces), else None
    replay_gap_p50_us: float | None

    @property
    def bound_speedup(self) -> float:
        return self.span_us / self.bound_span_us if self.bound_span_us > 0 else math.nan

    @property
    def replay_speedup(self) -> float | None:
        if self.replay_span_us is None or self.replay_span_us <= 0:
            return None
        return self.span_us / self.replay_span_us


@dataclass(frozen=True)
class TracePrediction:
    """The bound, and the replay where the trace is of a sync engine, per group."""

    run: str
    mode: str
    floor: Floor
    groups: tuple[GroupPrediction, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "mode": self.mode,
            "floor_us": self.floor.value_us,
            "floor_source": self.floor.source.value,
            "groups": [
                {
                    **group.__dict__,
                    "bound_speedup": group.bound_speedup,
                    "replay_speedup": group.replay_speedup,
                }
                for group in self.groups
            ],
            "missing": MISSING,
        }


def is_trace_run(run: RunData) -> bool:
    return str(run.meta.get("source", "")).startswith("trace:")


def predict_trace(run: RunData, floor: Floor) -> TracePrediction:
    """The bound for every group of the trace, and the replay when it was a sync engine."""
    where = run_label(run)
    if not run.complete:
        raise PredictError(f"{where} is incomplete: predict needs every step")
    if run.mode == "overlap":
        raise PredictError(f"{where} is an overlap trace: predict reads a sync (or unknown) one")
    steps = run.steps.dropna(subset=["device_start_us", "device_end_us"])
    if steps.empty:
        raise PredictError(f"{where} has no device steps to predict from")
    keys = [k for k in GROUP_KEYS if k in steps.columns]
    grouped = steps.groupby(keys, sort=True) if keys else [((), steps)]
    groups = tuple(
        _group(_name(keys, key), table, floor, run.mode == "sync") for key, table in grouped
    )
    return TracePrediction(where, run.mode, floor, groups)


def _name(keys: list[str], key: Any) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return " ".join(f"{k} {v}" for k, v in zip(keys, values, strict=True)) or "all"


def _group(name: str, table: pd.DataFrame, floor: Floor, replayable: bool) -> GroupPrediction:
    table = table.sort_values("device_start_us")
    span = float(table.device_end_us.max() - table.device_start_us.min())
    gaps = float(table.gap_before_us.fillna(0).sum())
    replay_span = replay_gap = None
    if replayable:
        replay_span, replay_gap = _replay(table, floor)
    return GroupPrediction(name, len(table), span, gaps, span - gaps, replay_span, replay_gap)


def _replay(table: pd.DataFrame, floor: Floor) -> tuple[float, float]:
    """The overlap replay of a sync trace: each gap as host work before the launch."""
    lengths = (table.device_end_us - table.device_start_us).to_numpy()
    gaps = table.gap_before_us.fillna(0).to_numpy()
    costs = [
        StepCost(float(g), 0.0, 0.0, 0.0, float(b)) for g, b in zip(gaps, lengths, strict=True)
    ]
    replayed = replay(costs, Schedule.OVERLAP, DeviceModel(floor.value_us))
    span = replayed[-1].run.device_end_us - replayed[0].run.device_start_us
    predicted_gaps = np.array([step.run.gap_before_us for step in replayed[1:]])
    return float(span), float(np.median(predicted_gaps)) if len(predicted_gaps) else math.nan
