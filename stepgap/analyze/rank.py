"""One rank's steps: their device work, measured per group, and each gap explained.

Per rank (one trace file): give each step range its device ops (`attribution`), build
the step rows (`table`), then per group (device, and stream when separate) measure gaps,
overlaps and idle time against all the group's device work and cut each gap into what the
host was doing (`causes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stepgap.analyze import causes
from stepgap.analyze.attribution import attribute_ops, event_marks, launch_threads, split_at_idle
from stepgap.analyze.blocking import blocking_calls
from stepgap.analyze.intervals import Union
from stepgap.analyze.options import StepOptions
from stepgap.analyze.rules import StepChoice
from stepgap.analyze.table import idle_figures, measure, step_rows
from stepgap.analyze.trace import TraceData


@dataclass
class RankResult:
    """One rank's measured steps, its groups' idle figures, and its gaps explained."""

    rows: pd.DataFrame
    idle: list[dict[str, Any]]
    segments: pd.DataFrame
    waits: pd.DataFrame
    threads: list[dict[str, Any]]
    unattributed: int


def measure_rank(trace: TraceData, choice: StepChoice | None, options: StepOptions) -> RankResult:
    """One trace's steps (by `choice`'s ranges, or split at idle gaps without one)."""
    keys = [k for k in options.group_keys if k != "rank"]
    ops, info, marks = _steps_of(trace, choice, options, keys)
    unattributed = int((trace.ops.correlation > 0).sum()) - len(ops) if choice else 0
    rows = step_rows(ops, keys, marks) if len(ops) else pd.DataFrame()
    if len(rows) and info is not None:
        rows = rows.merge(info, on="step", how="left")
    result = RankResult(rows, [], pd.DataFrame(), pd.DataFrame(), launch_threads(ops), unattributed)
    return _measure(trace, result, keys) if len(rows) else result


def _steps_of(trace: TraceData, choice: StepChoice | None, options: StepOptions, keys):
    """The trace's device ops with their step and launch, the step ranges' names and host
    times, and the event marks."""
    if choice is None:  # no step rule: the timeline is split at idle gaps
        assert options.split_idle_us is not None
        ops = split_at_idle(_with_launches(trace), options.split_idle_us, keys)
        return ops, None, None
    ranges = choice.ranges.get(trace.rank, pd.DataFrame())
    if not len(ranges):
        return trace.ops.iloc[:0], None, None
    ops = attribute_ops(trace, ranges)
    marks = event_marks(trace, ranges, ops, keys) if options.event_marks else None
    info = ranges[["name", "start_us", "end_us"]].rename(
        columns={"name": "range_name", "start_us": "host_start_us", "end_us": "host_end_us"}
    )
    info = info.assign(range_name=info.range_name.astype(str), step=np.arange(len(info)))
    return ops, info, marks


def _with_launches(trace: TraceData) -> pd.DataFrame:
    """All device ops with their launching call's start and thread (NaN when unknown)."""
    calls = trace.calls[trace.calls.correlation > 0].drop_duplicates("correlation")
    calls = calls[["correlation", "start_us", "pid", "tid"]].rename(
        columns={"start_us": "launch_us", "pid": "launch_pid", "tid": "launch_tid"}
    )
    return trace.ops.merge(calls, on="correlation", how="left")


def _measure(trace: TraceData, result: RankResult, keys: list[str]) -> RankResult:
    """Per group: gaps, overlaps and idle time against all the group's device work, and
    the gaps explained."""
    rows = result.rows.assign(rank=trace.rank)
    rows.index = pd.RangeIndex(len(rows))
    blocking = blocking_calls(trace.calls, trace.ops)
    measured, segments, waits = [], [], []
    for key, group in rows.groupby(keys, sort=True):
        device_ops = _group_ops(trace.ops, keys, key)
        busy = Union.of(device_ops.start_us, device_ops.end_us)
        group = measure(group, busy)
        result.idle.append({**_key_dict(trace.rank, keys, key), **idle_figures(group, busy)})
        windows = causes.gap_windows(group)
        segments.append(causes.gap_segments(trace, windows, blocking))
        waits.append(causes.gap_waits(trace, windows, device_ops, blocking))
        measured.append(group)
    result.rows = pd.concat(measured).sort_index()
    result.segments = pd.concat(segments, ignore_index=True)
    result.waits = pd.concat(waits, ignore_index=True)
    return result


def _group_ops(ops: pd.DataFrame, keys: list[str], key) -> pd.DataFrame:
    values = key if isinstance(key, tuple) else (key,)
    mask = np.ones(len(ops), dtype=bool)
    for column, value in zip(keys, values, strict=True):
        if column == "stream":
            mask &= ops.stream.astype(str).to_numpy() == str(value)
        else:
            mask &= ops[column].to_numpy() == value
    return ops[mask]


def _key_dict(rank: int, keys: list[str], key) -> dict[str, Any]:
    values = key if isinstance(key, tuple) else (key,)
    return {"rank": rank, **{k: _plain(v) for k, v in zip(keys, values, strict=True)}}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
