"""A sync run in, the overlap run's predicted summary out (with the notes a reader needs).

`predict_overlap` loads the sync run's inputs, replays them under the sync schedule (a
self-check: it must give back the measured sync figures; a large miss means the inputs
are not what the replay assumes, and the output says so), under the overlap schedule
(the prediction), and with every between-step gap removed (the bound: host work and
launch latency cost nothing and the device runs the measured steps back to back, no
floor; no schedule can do better with these steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from stepgap.predict.floor import Floor, FloorSource
from stepgap.predict.inputs import SyncInputs, load_sync_inputs, run_label
from stepgap.predict.model import DeviceModel, Schedule, StepCost
from stepgap.predict.outcome import predicted_summary
from stepgap.predict.schedule import simulate
from stepgap.runs import RunData
from stepgap.summary_view import ratio as quotient  # quotient(b, a) = b / a, NaN if undefined

SELF_CHECK_KEYS = ("output_throughput", "median_tpot_ms", "duration")
SELF_CHECK_TOLERANCE = 0.02
SHOWN_KEYS = (
    "gap_p50_us",
    "gap_p90_us",
    "gap_p99_us",
    "idle_fraction",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_e2el_ms",
    "output_throughput",
    "request_throughput",
    "duration",
    "num_steps",
)


@dataclass(frozen=True)
class Prediction:
    """The overlap schedule's predicted summary for one sync run."""

    run: str
    floor: Floor
    sync: dict[str, Any]  # the sync run's measured summary
    predicted: dict[str, Any]  # the overlap replay's summary (stepgap.metrics keys)
    sync_replay: dict[str, Any]  # the sync replay's summary (the self-check)
    bound: dict[str, Any]  # every between-step gap removed (gap_free_bound)
    exact_costs: int  # replayed steps costed by a sync step of the very same shape
    nearest_costs: int  # ... by the nearest shape
    notes: tuple[str, ...]

    def ratio(self, key: str) -> float:
        """Predicted overlap / measured sync."""
        return quotient(self.predicted.get(key), self.sync.get(key))

    def bound_ratio(self, key: str) -> float:
        """Gap-free bound / measured sync."""
        return quotient(self.bound.get(key), self.sync.get(key))

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "floor_us": self.floor.value_us,
            "floor_source": self.floor.source.value,
            "floor_run": self.floor.run,
            "sync": {k: self.sync.get(k) for k in SHOWN_KEYS},
            "predicted_overlap": {k: self.predicted.get(k) for k in SHOWN_KEYS},
            "predicted_over_sync": {k: self.ratio(k) for k in SHOWN_KEYS},
            "sync_replay": {k: self.sync_replay.get(k) for k in SHOWN_KEYS},
            "gap_free_bound": {k: self.bound.get(k) for k in SHOWN_KEYS},
            "costs": {"exact_shape": self.exact_costs, "nearest_shape": self.nearest_costs},
            "notes": list(self.notes),
        }


def predict_overlap(
    run: RunData, floor: Floor, host_blocks_device: bool | None = None
) -> Prediction:
    """Predict `run`'s (a complete, instrumented sync run) figures under overlap.
    `host_blocks_device`: whether host work freezes the device (default: on the CPU
    device only; stepgap.predict.model)."""
    inputs = load_sync_inputs(run)
    if host_blocks_device is None:  # the CPU device: one interpreter lock for host and device
        host_blocks_device = inputs.device_kind == "cpu"
    device = DeviceModel(floor.value_us, host_blocks_device)
    sync_replay = predicted_summary(simulate(inputs, Schedule.SYNC, device), inputs.warmup_steps)
    simulation = simulate(inputs, Schedule.OVERLAP, device)
    predicted = predicted_summary(simulation, inputs.warmup_steps)
    sync = dict(run.summary)
    notes = _notes(sync, predicted, sync_replay, floor, inputs.device_kind)
    return Prediction(
        run_label(run),
        floor,
        sync,
        predicted,
        sync_replay,
        gap_free_bound(inputs),
        simulation.exact_costs,
        simulation.nearest_costs,
        tuple(notes),
    )


def gap_free_bound(inputs: SyncInputs) -> dict[str, Any]:
    """The summary with every between-step gap removed: the sync run's steps replayed with
    no host cost, no launch latency and no floor, the device running them back to back."""
    steps = tuple(replace(step, cost=_device_only(step.cost)) for step in inputs.steps)
    simulation = simulate(replace(inputs, steps=steps), Schedule.SYNC, DeviceModel(0.0))
    return predicted_summary(simulation, inputs.warmup_steps)


def _device_only(cost: StepCost) -> StepCost:
    return StepCost(0.0, 0.0, 0.0, 0.0, cost.device_busy_us)


def ttft_note(sync: dict[str, Any], predicted: dict[str, Any]) -> str | None:
    """The warning when overlap is predicted to worsen TTFT p50."""
    worse = quotient(predicted.get("median_ttft_ms"), sync.get("median_ttft_ms"))
    if math.isnan(worse) or worse <= 1.0:
        return None
    return (
        f"overlap is predicted to worsen TTFT p50 by {worse - 1:.1%} "
        f"({sync['median_ttft_ms']:.3f} -> {predicted['median_ttft_ms']:.3f} ms): a new "
        "request's prefill waits one step behind the step in flight, and a finished "
        "request's slot is free a step later"
    )


def _notes(sync, predicted, sync_replay, floor: Floor, device_kind: str) -> list[str]:
    notes = [note] if (note := ttft_note(sync, predicted)) else []
    if floor.source is FloorSource.DEFAULT and device_kind == "cpu":
        notes.append(
            "the default floor is a GPU's; the CPU device's is ~100-150 µs: pass "
            "--floor-from OVERLAP_RUN (an overlap run on this machine)"
        )
    misses = [
        f"{key} {quotient(sync_replay.get(key), sync.get(key)) - 1:+.1%}"
        for key in SELF_CHECK_KEYS
        if abs(quotient(sync_replay.get(key), sync.get(key)) - 1) > SELF_CHECK_TOLERANCE
    ]
    if misses:
        notes.append(
            "self-check: replaying the sync run under sync rules misses its measured "
            f"figures ({', '.join(misses)}): the prediction inherits that error"
        )
    return notes
