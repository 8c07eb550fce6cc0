"""Steps from a trace: which device work belongs to which step, and the per-step table.

Two ways to find steps:
- host ranges (the default): ranges whose name matches a regex. A device op belongs to the
  step whose range, on the thread that launched it, contains the start of its launching
  runtime call (cudaLaunchKernel, cudaGraphLaunch, cudaMemcpyAsync, ...), found through the
  call's correlation id: Nsight Systems' projection of NVTX ranges onto the GPU. Matching
  ranges nested in another matching range count once, as the outermost.
- the kernel timeline alone (`split_idle_us`): a new step wherever the device (or stream)
  stays idle longer than the threshold; for traces without annotations.

A step's device interval spans its ops (kernels, memcpy, memset) per rank and device —
all streams together, or each stream on its own (`streams="separate"`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stepgap.analyze.trace import KERNEL, MEMCPY, MEMSET, TraceData, TraceError

# Tried in order; the first that matches any host range names the steps.
DEFAULT_RANGE_PATTERNS = (
    r"^stepgap/launch$",  # stepgap's own engine: step N's device work is launched in it
    r"(?i)(^|[\s:./])(execute_model|forward)$",  # vLLM / SGLang-style model runners
    r"^ProfilerStep#\d+$",  # torch.profiler's prof.step() once per loop iteration
)
STREAM_MODES = ("merged", "separate")
EVENT_RECORD_PREFIX = "cudaEventRecord"
STEP_COLUMNS = [
    "step",
    "kind",
    "rank",
    "device",
    "stream",
    "range_name",
    "host_start_us",
    "host_end_us",
    "device_start_us",
    "device_end_us",
    "busy_us",
    "gap_before_us",
    "after_idle",
    "kernels",
    "memcpys",
    "memsets",
    "idle_inside_us",
]


@dataclass(frozen=True)
class StepOptions:
    """How steps are found and measured.

    `range_pattern`: regex for the step ranges (None: DEFAULT_RANGE_PATTERNS in order).
    `split_idle_us`: split the device timeline at idle gaps longer than this instead.
    `streams`: "merged" (one row per rank, device and step) or "separate" (per stream too).
    `event_marks`: also count each cudaEventRecord inside a step range as a zero-length
    mark on the device, at max(the call's end, the end of the work queued before it) —
    what a CUDA-event step timer such as stepgap's own measures.
    """

    range_pattern: str | None = None
    split_idle_us: float | None = None
    streams: str = "merged"
    event_marks: bool = False

    def __post_init__(self) -> None:
        if self.streams not in STREAM_MODES:
            raise TraceError(f"streams must be merged or separate, got {self.streams!r}")
        if self.split_idle_us is not None and not self.split_idle_us > 0:
            raise TraceError(f"--split-idle-us must be > 0, got {self.split_idle_us}")
        if self.range_pattern is not None:
            try:
                re.compile(self.range_pattern)
            except re.error as error:
                raise TraceError(f"--range {self.range_pattern!r}: bad regex ({error})") from None

    @property
    def group_keys(self) -> list[str]:
        return ["rank", "device"] + (["stream"] if self.streams == "separate" else [])


# -- host ranges --------------------------------------------------------------------------------
def matching_ranges(ranges: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """The ranges whose name matches `pattern`, outermost only, ordered by start."""
    regex = re.compile(pattern)
    names = ranges.name.cat.categories
    wanted = [i for i, name in enumerate(names) if regex.search(str(name))]
    chosen = ranges[ranges.name.cat.codes.isin(wanted)]
    chosen = chosen.sort_values(["pid", "tid", "start_us", "end_us"], ascending=[1, 1, 1, 0])
    # A range that starts before the ones earlier on its thread have ended is nested.
    reach = chosen.groupby(["pid", "tid"], sort=False).end_us.cummax()
    before = reach.groupby([chosen.pid, chosen.tid], sort=False).shift(1)
    outer = chosen[before.isna() | (chosen.start_us >= before)]
    return outer.sort_values("start_us", kind="stable").reset_index(drop=True)


def choose_step_ranges(
    traces: list[TraceData], pattern: str | None
) -> tuple[str, dict[int, pd.DataFrame]]:
    """The pattern that names the steps and, per rank, its ranges; TraceError listing the
    range names found when nothing matches."""
    candidates = (pattern,) if pattern is not None else DEFAULT_RANGE_PATTERNS
    for candidate in candidates:
        found = {t.rank: matching_ranges(t.ranges, candidate) for t in traces}
        if any(len(f) for f in found.values()):
            return candidate, found
    wanted = f"--range {pattern!r}" if pattern else "the default step ranges"
    raise TraceError(
        f"no host range matches {wanted}; {describe_range_names(traces)}. "
        "Pick the step range with --range REGEX, or split at idle gaps with --split-idle-us"
    )


def describe_range_names(traces: list[TraceData], limit: int = 12) -> str:
    """The range names a trace holds (numbers folded: ProfilerStep#N), most frequent first."""
    found = [t.ranges.name.astype(str) for t in traces if len(t.ranges)]
    if not found:
        return "the trace holds no host ranges (record_function / NVTX) at all"
    names = pd.concat(found)
    counts = names.str.replace(r"\d+", "N", regex=True).value_counts()
    shown = ", ".join(f"{name} ({count})" for name, count in counts.head(limit).items())
    more = f", and {len(counts) - limit} more" if len(counts) > limit else ""
    return f"ranges found: {shown}{more}"


def attribute_ops(trace: TraceData, steps: pd.DataFrame) -> pd.DataFrame:
    """The device ops launched inside a step range, with `step` (the range's index) and
    `launch_us` (their call's start)."""
    calls = _calls_in_steps(trace.calls, steps)
    keys = ["correlation"] if (trace.ops.pid < 0).any() else ["pid", "correlation"]
    launched = calls[calls.correlation > 0].drop_duplicates(keys)[[*keys, "step", "start_us"]]
    ops = trace.ops[trace.ops.correlation > 0]
    ops = ops.merge(launched.rename(columns={"start_us": "launch_us"}), on=keys, how="inner")
    return ops


def _calls_in_steps(calls: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Each call that starts inside a step range on its own thread, with that step."""
    if not len(calls) or not len(steps):
        return calls.assign(step=pd.Series(dtype=np.int64)).iloc[:0]
    ranges = steps.assign(step=np.arange(len(steps)))[["pid", "tid", "start_us", "end_us", "step"]]
    ranges = ranges.rename(columns={"end_us": "range_end_us"}).sort_values("start_us")
    ordered = calls.sort_values("start_us")
    placed = pd.merge_asof(ordered, ranges, on="start_us", by=["pid", "tid"], direction="backward")
    inside = placed.step.notna() & (placed.start_us <= placed.range_end_us)
    placed = placed[inside].drop(columns="range_end_us")
    return placed.astype({"step": np.int64})


def event_marks(trace: TraceData, steps: pd.DataFrame, ops: pd.DataFrame, keys: list[str]):
    """cudaEventRecord calls inside step ranges as zero-length device marks, per group.

    A mark lands when the device reaches it: after the call returns, and after all work
    launched before it on the group's queue."""
    calls = _calls_in_steps(trace.calls, steps)
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


# -- the kernel timeline alone ------------------------------------------------------------------
def split_at_idle(ops: pd.DataFrame, threshold_us: float, keys: list[str]) -> pd.DataFrame:
    """Number steps per group: a new one after each idle stretch longer than the threshold."""
    ops = ops.sort_values([*keys, "start_us"], kind="stable")
    reach = ops.groupby(keys, sort=False).end_us.cummax()
    before = reach.groupby([ops[k] for k in keys], sort=False).shift(1)
    starts_step = before.isna() | (ops.start_us - before > threshold_us)
    step = starts_step.astype(np.int64).groupby([ops[k] for k in keys], sort=False).cumsum() - 1
    return ops.assign(step=step.to_numpy())


# -- the table ----------------------------------------------------------------------------------
def step_rows(ops: pd.DataFrame, keys: list[str], marks: pd.DataFrame | None) -> pd.DataFrame:
    """One row per group and step: device interval, busy union, op counts."""
    by = [*keys, "step"]
    ops = ops.sort_values([*by, "start_us"], kind="stable")
    grouped = ops.groupby(by, sort=False)
    reach = grouped.end_us.cummax()
    before = reach.groupby([ops[k] for k in by], sort=False).shift(1).fillna(-np.inf)
    covered = (ops.end_us - np.maximum(ops.start_us, before)).clip(lower=0)
    kind = ops.kind.astype(str)
    rows = pd.DataFrame(
        {
            "device_start_us": grouped.start_us.min(),
            "device_end_us": grouped.end_us.max(),
            "busy_union_us": covered.groupby([ops[k] for k in by], sort=False).sum(),
            "kernels": (kind == KERNEL).groupby([ops[k] for k in by], sort=False).sum(),
            "memcpys": (kind == MEMCPY).groupby([ops[k] for k in by], sort=False).sum(),
            "memsets": (kind == MEMSET).groupby([ops[k] for k in by], sort=False).sum(),
        }
    ).reset_index()
    if "stream" not in keys:
        rows = rows.merge(_stream_labels(ops, by), on=by)
    if marks is not None and len(marks):
        rows = _apply_marks(rows, marks, by)
    rows = rows.sort_values(by, kind="stable").reset_index(drop=True)
    rows["busy_us"] = rows.device_end_us - rows.device_start_us
    rows["idle_inside_us"] = (rows.busy_us - rows.busy_union_us).clip(lower=0)
    previous_end = rows.groupby(keys, sort=False).device_end_us.shift(1)
    rows["gap_before_us"] = rows.device_start_us - previous_end
    return rows.drop(columns="busy_union_us")


def _stream_labels(ops: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Which streams each step used, as "7+13": one bit per stream, summed per step."""
    used = ops[[*by, "stream"]].drop_duplicates()
    codes, streams = pd.factorize(used.stream, sort=True)
    if len(streams) > 62:  # more streams than bits: spell each step's set out
        labels = used.groupby(by).stream.agg(lambda s: "+".join(map(str, sorted(s))))
        return labels.rename("stream").reset_index()
    masks = (
        pd.Series(np.left_shift(1, codes), index=used.index).groupby([used[k] for k in by]).sum()
    )
    names = {
        mask: "+".join(str(stream) for i, stream in enumerate(streams) if mask >> i & 1)
        for mask in masks.unique()
    }
    return masks.map(names).rename("stream").reset_index()


def _apply_marks(rows: pd.DataFrame, marks: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    join = [k for k in by if k in marks.columns]
    span = marks.groupby(join).mark_us.agg(["min", "max"]).reset_index()
    rows = rows.merge(span, on=join, how="left")
    rows["device_start_us"] = np.fmin(rows.device_start_us, rows["min"])
    rows["device_end_us"] = np.fmax(rows.device_end_us, rows["max"])
    return rows.drop(columns=["min", "max"])
