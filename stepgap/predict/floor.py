"""The inter-step floor: the least device idle between two steps queued back to back.

It is the device's own (how fast it starts a step already queued behind a running one),
not the host's, so it is measured on an overlap run of the same device — the median
decode gap of that run (`--floor-from OVERLAP_RUN`) — or given (`--floor-us`). The
default, 5 µs, is a CUDA graph queued behind another on an H200 (overlap runs' gap p50:
2.9-3.1 µs, reports/README.md). The CPU device's floor is far larger (its stream is a
Python worker thread: ~100-150 µs on 2 cores), so on CPU measure it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from stepgap.predict.errors import PredictError, with_article
from stepgap.predict.inputs import run_label
from stepgap.predict.model import DEFAULT_FLOOR_US
from stepgap.runs import RunData

MAX_FLOOR_US = 1e6


class FloorSource(enum.Enum):
    """Where the floor came from."""

    DEFAULT = "default"
    GIVEN = "given"
    MEASURED = "measured"


@dataclass(frozen=True)
class Floor:
    """The floor used, and where it came from (`run`: the overlap run it was measured on)."""

    value_us: float
    source: FloorSource
    run: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value_us) and 0 <= self.value_us <= MAX_FLOOR_US):
            raise PredictError(
                f"the inter-step floor must be in [0, {MAX_FLOOR_US:g}] µs, got {self.value_us}"
            )
        if not isinstance(self.source, FloorSource):
            raise TypeError(f"Floor.source must be a FloorSource, got {self.source!r}")

    def describe(self) -> str:
        if self.source is FloorSource.MEASURED:
            return f"{self.value_us:.1f} µs, the median decode gap of {self.run}"
        if self.source is FloorSource.GIVEN:
            return f"{self.value_us:.1f} µs, given"
        return f"{self.value_us:.1f} µs, the default (a GPU's; measure yours: --floor-from)"


def default_floor() -> Floor:
    return Floor(DEFAULT_FLOOR_US, FloorSource.DEFAULT)


def floor_from_run(run: RunData) -> Floor:
    """The median decode gap of a complete overlap run; PredictError when it has none."""
    where = run_label(run)
    if run.mode != "overlap":
        raise PredictError(
            f"--floor-from takes an overlap run; {where} is {with_article(run.mode)} run"
        )
    if not run.complete:
        raise PredictError(f"--floor-from: {where} is incomplete")
    value = run.summary.get("gap_p50_us")
    if value is None or not math.isfinite(float(value)):
        raise PredictError(f"--floor-from: {where} has no decode gaps (gap_p50_us is empty)")
    return Floor(float(value), FloorSource.MEASURED, where)
