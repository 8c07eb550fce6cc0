"""A simulation's figures: the summary metrics of `stepgap.metrics`, computed the same way.

The replayed steps become a steps table (device start and end, gap before, kind, whether
the host paused for an arrival) and the replayed requests a requests table (TTFT, TPOT,
E2E from their token times); `stepgap.metrics` then computes gap percentiles, idle
fraction, TPOT / TTFT / ITL / E2E statistics and throughput exactly as for a measured run,
so a predicted figure and a measured one mean the same thing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd

from stepgap import metrics
from stepgap.predict.schedule import Simulation


def steps_table(simulation: Simulation) -> pd.DataFrame:
    """The replayed steps as steps.csv's columns that the gap statistics read."""
    rows = [
        {
            "step": step.index,
            "kind": step.shape.kind.value,
            "batch_size": step.shape.decode_rows + step.shape.chunks,
            "num_tokens": step.shape.num_tokens,
            "device_start_us": step.run.device_start_us,
            "device_end_us": step.run.device_end_us,
            "busy_us": step.run.device_end_us - step.run.device_start_us,
            "gap_before_us": step.run.gap_before_us,
            "after_idle": step.run.after_idle,
            "excluded": "arrival" if step.run.after_idle else "",
        }
        for step in simulation.steps
    ]
    return pd.DataFrame(rows)


def requests_table(simulation: Simulation) -> pd.DataFrame:
    """The replayed requests as requests.csv (vLLM's TTFT, TPOT, E2E definitions)."""
    return metrics.request_table(SimpleNamespace(requests=simulation.requests))  # type: ignore[arg-type]


def predicted_summary(simulation: Simulation, warmup_steps: int) -> dict[str, Any]:
    """The summary a measured run of this schedule would have (stepgap.metrics keys)."""
    times = {r.request_id: list(r.token_times_s) for r in simulation.requests}
    tokens = {r.request_id: list(r.output) for r in simulation.requests}
    return metrics.summarize(
        steps_table(simulation),
        requests_table(simulation),
        times,
        tokens,
        simulation.end_us / 1e6,
        warmup_steps,
    )
