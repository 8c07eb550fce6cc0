"""The per-step table: each step's device interval, the gap before it, any overlap with
the steps before it, and the device idle time inside it.

Per group (rank, device, and stream when separate), steps are taken in the order they
start on the device. For each step, `reach` is the latest end of the steps that started
before it:
- gap_before_us = max(0, start - reach): idle between steps, never negative;
- overlap_before_us = max(0, min(end, reach) - start): how long it ran beside them;
- idle_inside_us: device idle (no kernel, copy or memset of the group, any step's or
  none's) in the part of the step's interval after `reach` — the stretch of the timeline
  this step adds.
So over a group: sum(gap_before_us) = span - union(step intervals), sum(idle_inside_us) =
union(step intervals) - busy there, and the device's total idle over the span is their sum
less any unattributed device work that ran between steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stepgap.analyze.intervals import Union
from stepgap.analyze.trace import KERNEL, MEMCPY, MEMSET

STEP_COLUMNS = [
    "step",
    "kind",
    "rank",
    "device",
    "stream",
    "range_name",
    "host_start_us",
    "host_end_us",
    "first_launch_us",
    "launch_threads",
    "device_start_us",
    "device_end_us",
    "busy_us",
    "gap_before_us",
    "overlap_before_us",
    "after_idle",
    "kernels",
    "memcpys",
    "memsets",
    "idle_inside_us",
    "gap_cause",
]


def step_rows(ops: pd.DataFrame, keys: list[str], marks: pd.DataFrame | None) -> pd.DataFrame:
    """One row per group and step: device interval, op counts, streams, first launch."""
    by = [*keys, "step"]
    ops = ops.sort_values([*by, "start_us"], kind="stable")
    grouped = ops.groupby(by, sort=False)
    kind = ops.kind.astype(str)
    rows = pd.DataFrame(
        {
            "device_start_us": grouped.start_us.min(),
            "device_end_us": grouped.end_us.max(),
            "kernels": (kind == KERNEL).groupby([ops[k] for k in by], sort=False).sum(),
            "memcpys": (kind == MEMCPY).groupby([ops[k] for k in by], sort=False).sum(),
            "memsets": (kind == MEMSET).groupby([ops[k] for k in by], sort=False).sum(),
        }
    ).reset_index()
    if "stream" not in keys:
        rows = rows.merge(_labels(ops, by, "stream"), on=by)
    if "launch_us" in ops.columns:
        rows = rows.merge(_first_launches(ops, by), on=by, how="left")
        rows = rows.merge(_labels(ops, by, "launch_tid", "launch_threads"), on=by)
    if marks is not None and len(marks):
        rows = _apply_marks(rows, marks, by)
    return rows.sort_values(by, kind="stable").reset_index(drop=True)


def _first_launches(ops: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The earliest launching call of each step: when and from which thread."""
    first = ops.sort_values("launch_us", kind="stable").drop_duplicates(by)
    return first[[*by, "launch_us", "launch_pid", "launch_tid"]].rename(
        columns={"launch_us": "first_launch_us"}
    )


def _labels(ops: pd.DataFrame, by: list[str], column: str, name: str | None = None):
    """Which values of `column` (streams, threads) each step used, as "7+13": one bit per
    value, summed per step, each distinct sum spelled once."""
    used = ops[[*by, column]].drop_duplicates()
    codes, values = pd.factorize(used[column], sort=True)
    if len(values) > 62:  # more values than bits: spell each step's set out
        labels = used.groupby(by)[column].agg(lambda s: "+".join(map(str, sorted(s))))
        return labels.rename(name or column).reset_index()
    masks = pd.Series(np.left_shift(1, codes), index=used.index).groupby([used[k] for k in by])
    masks = masks.sum()
    spelled = {
        mask: "+".join(str(v) for i, v in enumerate(values) if mask >> i & 1)
        for mask in masks.unique()
    }
    return masks.map(spelled).rename(name or column).reset_index()


def _apply_marks(rows: pd.DataFrame, marks: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    join = [k for k in by if k in marks.columns]
    span = marks.groupby(join).mark_us.agg(["min", "max"]).reset_index()
    rows = rows.merge(span, on=join, how="left")
    rows["device_start_us"] = np.fmin(rows.device_start_us, rows["min"])
    rows["device_end_us"] = np.fmax(rows.device_end_us, rows["max"])
    return rows.drop(columns=["min", "max"])


def measure(rows: pd.DataFrame, busy: Union) -> pd.DataFrame:
    """One group's rows with busy_us, gap_before_us, overlap_before_us and idle_inside_us
    (`busy`: the union of all the group's device intervals)."""
    order = np.lexsort((rows.step.to_numpy(), rows.device_start_us.to_numpy()))
    start = rows.device_start_us.to_numpy()[order]
    end = rows.device_end_us.to_numpy()[order]
    reach = np.concatenate([[-np.inf], np.maximum.accumulate(end)[:-1]])
    first = np.arange(len(order)) == 0
    new_from = np.maximum(start, reach)
    measured = pd.DataFrame(
        {
            "busy_us": end - start,
            "gap_before_us": np.where(first, np.nan, np.clip(start - reach, 0, None)),
            "overlap_before_us": np.where(
                first, 0.0, np.clip(np.minimum(end, reach) - start, 0, None)
            ),
            "idle_inside_us": np.clip(end - new_from, 0, None) - busy.covered(new_from, end),
        },
        index=rows.index[order],
    )
    return rows.join(measured)


def idle_figures(rows: pd.DataFrame, busy: Union) -> dict[str, float]:
    """One group's three idle figures over its span (first step start to last step end)."""
    if not len(rows):
        return {"span_us": 0.0, "between_us": 0.0, "inside_us": 0.0, "total_us": 0.0}
    first, last = rows.device_start_us.min(), rows.device_end_us.max()
    span = float(last - first)
    return {
        "span_us": span,
        "between_us": float(rows.gap_before_us.sum()),
        "inside_us": float(rows.idle_inside_us.sum()),
        "total_us": span - float(busy.covered(first, last)),
    }
