"""A run's step timeline as a Chrome trace (JSON) that ui.perfetto.dev and chrome://tracing
open: a device track with one event per step and one per gap, and a host track with the
host-phase spans of phases.csv.

Times are µs on the device clock of steps.csv, so step and gap events carry the table's
numbers unchanged; host phases (host clock) are moved onto it through the run's origin
marker (`origin_host_us` in run.json: host time at which device time 0 was recorded).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from stepgap.atomic import write_file
from stepgap.runs import RunData, RunError

DEVICE_PID, HOST_PID = 1, 2
STEPS_TID, PHASES_TID = 1, 1
GAP_NAME = "idle gap"
STEP_ARGS = ("step", "kind", "batch_size", "num_tokens", "busy_us")


def _number(value: Any) -> Any:
    """A JSON-safe scalar: numpy types unwrapped, NaN as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _metadata(pid: int, tid: int, process: str, thread: str, order: int) -> list[dict]:
    def event(name: str, args: dict) -> dict:
        return {"ph": "M", "pid": pid, "tid": tid, "name": name, "args": args}

    return [
        event("process_name", {"name": process}),
        event("thread_name", {"name": thread}),
        event("process_sort_index", {"sort_index": order}),
    ]


def _complete(name: str, cat: str, ts: float, dur: float, pid: int, tid: int, args: dict) -> dict:
    return {
        "name": name,
        "cat": cat,
        "ph": "X",
        "ts": float(ts),
        "dur": float(dur),
        "pid": pid,
        "tid": tid,
        "args": {k: _number(v) for k, v in args.items()},
    }


def step_events(steps: pd.DataFrame) -> list[dict]:
    """One complete event per step (device start, busy time) on the device track."""
    needed = {"device_start_us", "device_end_us"}
    if not needed <= set(steps.columns):
        raise RunError(f"steps.csv lacks {sorted(needed - set(steps.columns))}: no device times")
    timed = steps.dropna(subset=list(needed))
    busy = timed.busy_us if "busy_us" in timed else timed.device_end_us - timed.device_start_us
    names = timed.kind if "kind" in timed else pd.Series("step", index=timed.index)
    args = timed[[c for c in STEP_ARGS if c in timed.columns]].to_dict("records")
    return [
        _complete(str(name), "device", start, duration, DEVICE_PID, STEPS_TID, step_args)
        for name, start, duration, step_args in zip(
            names, timed.device_start_us, busy, args, strict=True
        )
    ]


def gap_events(steps: pd.DataFrame) -> list[dict]:
    """One complete event per gap (previous step's device end, gap_before_us) on the device
    track, with the gap's attribution to host phases as args. Missing or negative gaps
    (the first step; overlapping device intervals) have no event."""
    if "gap_before_us" not in steps.columns:
        return []
    previous_end = steps.device_end_us.shift(1)
    shown = steps.gap_before_us.notna() & (steps.gap_before_us >= 0) & previous_end.notna()
    gaps = steps[shown]
    attribution = [c for c in steps.columns if c.startswith("gap_") and c != "gap_before_us"]
    extra = gaps[[c for c in [*attribution, "after_idle"] if c in steps.columns]]
    before = gaps.step if "step" in gaps else pd.Series(gaps.index, index=gaps.index)
    return [
        _complete(GAP_NAME, "device", ts, dur, DEVICE_PID, STEPS_TID, {"before_step": b} | more)
        for ts, dur, b, more in zip(
            previous_end[shown], gaps.gap_before_us, before, extra.to_dict("records"), strict=True
        )
    ]


def phase_events(phases: pd.DataFrame, origin_host_us: float) -> list[dict]:
    """One complete event per host-phase span, moved from the host clock to the device's."""
    starts = phases.start_us - origin_host_us
    durations = phases.end_us - phases.start_us
    return [
        _complete(str(phase), "host", start, duration, HOST_PID, PHASES_TID, {"step": step})
        for phase, start, duration, step in zip(
            phases.phase, starts, durations, phases.step, strict=True
        )
    ]


def perfetto_trace(run: RunData) -> dict[str, Any]:
    """The run's steps, gaps and host phases as a Chrome trace object."""
    device = run.meta.get("environment", {}).get("device", {}).get("name", "device")
    events = _metadata(DEVICE_PID, STEPS_TID, f"device ({device})", "steps and gaps", 0)
    events += step_events(run.steps) + gap_events(run.steps)
    notes = []
    if run.phases is not None and len(run.phases):
        origin = run.meta.get("origin_host_us")
        if origin is None:
            notes.append("run.json has no origin_host_us: host phases left out")
        else:
            events += _metadata(HOST_PID, PHASES_TID, "host", "phases", 1)
            events += phase_events(run.phases, float(origin))
    else:
        notes.append("no phases.csv: host track left out")
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run": run.name,
            "mode": run.mode,
            "complete": run.complete,
            "clock": "device µs from the run's origin marker",
            "notes": notes,
        },
    }


def export_perfetto(run: RunData, out_path: str | Path) -> tuple[Path, int]:
    """Write the run's Chrome trace to `out_path` atomically (gzip when it ends in .gz);
    returns the path and the number of trace events. The caller checks the path first
    (`stepgap.output_paths.check_file_target`)."""
    out_path = Path(out_path)
    trace = perfetto_trace(run)
    payload = json.dumps(trace, separators=(",", ":"), allow_nan=False).encode()
    if out_path.suffix == ".gz":
        payload = gzip.compress(payload)
    return write_file(out_path, payload), len(trace["traceEvents"])
