"""Which device work belongs to which step.

A device op belongs to the step whose range contains the start of its launching call
(cudaLaunchKernel, cudaGraphLaunch, cudaMemcpyAsync, ...), found through the call's
correlation id — every kernel of a CUDA-graph replay carries the id of the
cudaGraphLaunch that replayed it. The call may come from any thread of the process: a
range on the calling thread itself wins, else the range (of any thread) opened last that is
still open when the call starts. Engines launch from several threads: PyTorch's autograd
thread, SGLang's forward thread beside its scheduler, vLLM's output threads.

Without annotations, `split_at_idle` numbers steps along the kernel timeline instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stepgap.analyze.intervals import NONE, owner_at, owner_timeline
from stepgap.analyze.trace import TraceData

EVENT_RECORD_PREFIX = "cudaEventRecord"


def calls_in_steps(calls: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Each call that starts inside a step range of its process, with that step (the
    range's index in `steps`)."""
    placed = np.full(len(calls), NONE, dtype=np.int64)
    if len(calls) and len(steps):
        numbered = steps.assign(step=np.arange(len(steps)))
        for keys in (["pid", "tid"], ["pid"]):  # the calling thread's own range first
            placed = _place(calls, numbered, keys, placed)
    return calls.assign(step=placed)[placed != NONE]


def _place(calls: pd.DataFrame, steps: pd.DataFrame, keys: list[str], placed) -> np.ndarray:
    placed = placed.copy()
    for key, own in steps.groupby(keys, sort=False):
        values = key if isinstance(key, tuple) else (key,)
        mask = placed == NONE
        for column, value in zip(keys, values, strict=True):
            mask &= calls[column].to_numpy() == value
        timeline = owner_timeline(own.start_us.to_numpy(), own.end_us.to_numpy(), own.step)
        placed[mask] = owner_at(timeline, calls.start_us.to_numpy()[mask])
    return placed


def attribute_ops(trace: TraceData, steps: pd.DataFrame) -> pd.DataFrame:
    """The device ops launched inside a step range, with `step`, `launch_us` (their call's
    start) and the launching `launch_pid` / `launch_tid`."""
    calls = calls_in_steps(trace.calls, steps)
    keys = ["correlation"] if (trace.ops.pid < 0).any() else ["pid", "correlation"]
    launched = calls[calls.correlation > 0].drop_duplicates(keys)
    launched = launched.rename(
        columns={"start_us": "launch_us", "pid": "launch_pid", "tid": "launch_tid"}
    )
    if keys == ["pid", "correlation"]:
        launched["pid"] = launched.launch_pid
    columns = [*keys, "step", "launch_us", "launch_pid", "launch_tid"]
    ops = trace.ops[trace.ops.correlation > 0]
    return ops.merge(launched[columns], on=keys, how="inner")


def launch_threads(ops: pd.DataFrame) -> list[dict]:
    """Which threads launched the attributed device work, busiest first."""
    if not len(ops):
        return []
    counts = ops.groupby(["launch_pid", "launch_tid"]).size().sort_values(ascending=False)
    return [{"pid": int(p), "tid": int(t), "device_ops": int(n)} for (p, t), n in counts.items()]


def event_marks(trace: TraceData, steps: pd.DataFrame, ops: pd.DataFrame, keys: list[str]):
    """cudaEventRecord calls inside step ranges as zero-length device marks, per group.

    A mark lands when the device reaches it: after the call returns, and after all work
    launched before it on the group's queue."""
    calls = calls_in_steps(trace.calls, steps)
    records = calls[calls.name.astype(str).str.startswith(EVENT_RECORD_PREFIX)]
    marks = []
    group_keys = [k for k in keys if k != "rank"]
    for group, queue in ops.groupby(group_keys, sort=False):
        queue = queue.sort_values("launch_us")
        busy_until = np.maximum.accumulate(queue.end_us.to_numpy())
        launched = np.searchsorted(queue.launch_us.to_numpy(), records.start_us.to_numpy())
        reached = np.where(launched > 0, busy_until[np.maximum(launched - 1, 0)], -np.inf)
        at = np.maximum(records.end_us.to_numpy(), reached)
        values = group if isinstance(group, tuple) else (group,)
        frame = pd.DataFrame({"step": records.step.to_numpy(), "mark_us": at})
        marks.append(frame.assign(**dict(zip(group_keys, values, strict=True))))
    if not marks:
        return pd.DataFrame(columns=["step", "mark_us", *group_keys])
    return pd.concat(marks, ignore_index=True)


def split_at_idle(ops: pd.DataFrame, threshold_us: float, keys: list[str]) -> pd.DataFrame:
    """Number steps per group: a new one after each idle stretch longer than the threshold."""
    ops = ops.sort_values([*keys, "start_us"], kind="stable")
    reach = ops.groupby(keys, sort=False).end_us.cummax()
    before = reach.groupby([ops[k] for k in keys], sort=False).shift(1)
    starts_step = before.isna() | (ops.start_us - before > threshold_us)
    step = starts_step.astype(np.int64).groupby([ops[k] for k in keys], sort=False).cumsum() - 1
    return ops.assign(step=step.to_numpy())
