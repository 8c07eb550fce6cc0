"""Why each step gap happened: what the host was doing while the device sat idle.

For the gap before a step — from the end of the device work before it (`reach`) to its own
device start — the host timeline of the thread that made the step's first launch is cut
into pieces, each labelled with the innermost host range (the engine's own annotation, a
`record_function` or NVTX range) open on that thread, and with its kind (`Segment`):
- sync_wait: still blocked in a synchronising call (`blocking`) after the device finished;
- host_range / unannotated: host work inside an annotated range / outside every range;
- launch_latency: from the step's first launch call to its first device op;
- queued: the step's first launch came before the previous work ended, so the device
  idled with work already queued (launch or dependency latency, not the host).
The wait itself — the blocking call open on that thread (else on any thread of the process)
when the device went idle — names the gap's cause ("cudaStreamSynchronize in postprocess
after a DtoH pageable copy"); the summary adds gap time up by cause and by host range.
"""

from __future__ import annotations

import enum

import numpy as np
import pandas as pd

from stepgap.analyze.intervals import NONE, owner_at, owner_timeline
from stepgap.analyze.rules import fold_numbers
from stepgap.analyze.trace import TraceData

NO_WAIT = "no blocking call"
UNANNOTATED = "(no host range)"
QUEUED = "(queued on the device)"
SEGMENT_COLUMNS = ["gap", "segment", "range", "us"]
WAIT_COLUMNS = ["gap", "wait", "wait_range", "after", "wait_tid"]
OPEN_SLACK_US = 1e-6  # 1 ps: a call that returns as the device goes idle was still open


class Segment(enum.StrEnum):
    """What one piece of a gap was (see the module docstring)."""

    SYNC_WAIT = "sync_wait"
    HOST_RANGE = "host_range"
    UNANNOTATED = "unannotated"
    LAUNCH_LATENCY = "launch_latency"
    QUEUED = "queued"


def gap_windows(rows: pd.DataFrame) -> pd.DataFrame:
    """The gaps of one trace's step table: gap (the row's index), start/end µs on the device,
    the first launch and its thread."""
    gaps = rows[(rows.gap_before_us > 0) & rows.first_launch_us.notna()]
    return pd.DataFrame(
        {
            "gap": gaps.index,
            "start_us": gaps.device_start_us - gaps.gap_before_us,
            "end_us": gaps.device_start_us,
            "launch_us": gaps.first_launch_us,
            "pid": gaps.launch_pid.astype(np.int64),
            "tid": gaps.launch_tid.astype(np.int64),
        }
    )


def gap_segments(trace: TraceData, windows: pd.DataFrame, waits: pd.DataFrame) -> pd.DataFrame:
    """Every gap cut into labelled pieces: gap, segment, range (innermost, numbers folded),
    us. The pieces of a gap add up to the gap exactly. `waits`: the trace's
    `blocking_calls`."""
    if not len(windows):
        return pd.DataFrame(columns=SEGMENT_COLUMNS)
    names = range_names(trace)
    parts = []
    for (pid, tid), gaps in windows.groupby(["pid", "tid"], sort=False):
        ranges = host_ranges(trace, pid, tid)
        timeline = owner_timeline(ranges.start_us, ranges.end_us, ranges.name.cat.codes)
        syncing = _thread(waits, pid, tid)
        sync_timeline = owner_timeline(syncing.start_us, syncing.end_us, np.zeros(len(syncing)))
        parts.append(_pieces(gaps, timeline, sync_timeline, names))
    return pd.concat(parts, ignore_index=True)


def range_names(trace: TraceData) -> np.ndarray:
    """Range names by code, numbers folded; index NONE (-1) reads "(no host range)"."""
    names = fold_numbers(pd.Series(trace.ranges.name.cat.categories, dtype=object))
    return np.append(names.to_numpy(dtype=object), UNANNOTATED)


def host_ranges(trace: TraceData, pid: int, tid: int) -> pd.DataFrame:
    """The host ranges that say what a thread was doing: its own, or, for a thread with
    none (a forward thread launching for an annotated scheduler), its process's."""
    own = _thread(trace.ranges, pid, tid)
    return own if len(own) else trace.ranges[trace.ranges.pid.to_numpy() == pid]


def _thread(frame: pd.DataFrame, pid: int, tid: int) -> pd.DataFrame:
    return frame[(frame.pid.to_numpy() == pid) & (frame.tid.to_numpy() == tid)]


def _pieces(gaps: pd.DataFrame, ranges_tl, sync_tl, names: np.ndarray) -> pd.DataFrame:
    """One thread's gaps as pieces: cut at the first launch, at every range and sync
    boundary; each piece labelled."""
    start, end = gaps.start_us.to_numpy(), gaps.end_us.to_numpy()
    launch = np.clip(gaps.launch_us.to_numpy(), start, end)
    queued = gaps.launch_us.to_numpy() <= start
    windows = pd.DataFrame(
        {
            "gap": np.concatenate([gaps.gap.to_numpy()] * 2),
            "a": np.concatenate([start, launch]),
            "b": np.concatenate([launch, end]),
            "host": np.concatenate([~queued, np.zeros(len(gaps), bool)]),
            "queued": np.concatenate([queued, queued]),
        }
    )
    pieces = split_windows(windows, np.union1d(ranges_tl[0], sync_tl[0]))
    middle = (pieces.a.to_numpy() + pieces.b.to_numpy()) / 2
    owner = owner_at(ranges_tl, middle)
    in_sync = owner_at(sync_tl, middle) != NONE
    kind = np.where(owner != NONE, Segment.HOST_RANGE, Segment.UNANNOTATED)
    kind = np.where(in_sync, Segment.SYNC_WAIT, kind)
    kind = np.where(pieces.host, kind, Segment.LAUNCH_LATENCY)
    kind = np.where(pieces.queued, Segment.QUEUED, kind)
    label = np.where(pieces.queued, QUEUED, names[owner])
    return pd.DataFrame(
        {"gap": pieces.gap, "segment": kind, "range": label, "us": pieces.b - pieces.a}
    )


def split_windows(windows: pd.DataFrame, cuts: np.ndarray) -> pd.DataFrame:
    """The windows [a, b) cut at every time of `cuts` inside them (empty windows dropped)."""
    windows = windows[windows.b > windows.a]
    a, b = windows.a.to_numpy(), windows.b.to_numpy()
    first = np.searchsorted(cuts, a, side="right")  # the first cut after a
    inner = np.searchsorted(cuts, b, side="left") - first  # cuts strictly inside
    pieces = inner + 1
    row = np.repeat(np.arange(len(windows)), pieces)
    k = np.arange(len(row)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    at = first[row] + k
    padded = np.append(cuts, np.inf)
    lo = np.where(k == 0, a[row], padded[np.clip(at - 1, 0, len(cuts))])
    hi = np.where(k == inner[row], b[row], padded[np.clip(at, 0, len(cuts))])
    return windows.iloc[row].reset_index(drop=True).assign(a=lo, b=hi)


def gap_waits(trace: TraceData, windows, group_ops, waits: pd.DataFrame) -> pd.DataFrame:
    """Per gap: the blocking call open when the device went idle (on the launching thread,
    else on any thread of the process), the innermost host range it was called in, and the
    device work it waited for (the op that ended last before the gap)."""
    if not len(windows):
        return pd.DataFrame(columns=WAIT_COLUMNS)
    waits = waits.reset_index(drop=True)
    found = np.full(len(windows), NONE)
    for keys in (["pid", "tid"], ["pid"]):
        found = _open_calls(waits, windows, keys, found)
    has = found != NONE
    label = np.append(waits.label.to_numpy(dtype=object), NO_WAIT)
    tid = np.append(waits.tid.to_numpy(), -1)
    return pd.DataFrame(
        {
            "gap": windows.gap.to_numpy(),
            "wait": label[found],
            "wait_range": np.where(has, _range_at(trace, waits, found), ""),
            "after": _last_before(group_ops, windows.start_us.to_numpy() + OPEN_SLACK_US),
            "wait_tid": tid[found],
        }
    )


def _open_calls(waits: pd.DataFrame, windows: pd.DataFrame, keys: list[str], found) -> np.ndarray:
    """Index in `waits` of the blocking call open on each window's thread (or process) when
    the window starts, for the windows not found yet."""
    found = found.copy()
    for key, calls in waits.groupby(keys, sort=False):
        values = key if isinstance(key, tuple) else (key,)
        mask = found == NONE
        for column, value in zip(keys, values, strict=True):
            mask &= windows[column].to_numpy() == value
        timeline = owner_timeline(calls.start_us.to_numpy(), calls.end_us.to_numpy(), calls.index)
        # open when the device went idle: a call ending at that very instant counts
        found[mask] = owner_at(timeline, windows.start_us.to_numpy()[mask] - OPEN_SLACK_US)
    return found


def _range_at(trace: TraceData, waits: pd.DataFrame, found: np.ndarray) -> np.ndarray:
    """The innermost host range on the found calls' threads at their start (folded)."""
    names = range_names(trace)
    out = np.full(len(found), "", dtype=object)
    has = found != NONE
    if not has.any():
        return out
    pids, tids = waits.pid.to_numpy()[found], waits.tid.to_numpy()[found]
    starts = waits.start_us.to_numpy()[found]
    for pid, tid in set(zip(pids[has].tolist(), tids[has].tolist(), strict=True)):
        mine = has & (pids == pid) & (tids == tid)
        ranges = host_ranges(trace, pid, tid)
        timeline = owner_timeline(ranges.start_us, ranges.end_us, ranges.name.cat.codes)
        out[mine] = names[owner_at(timeline, starts[mine])]
    return out


def _last_before(ops: pd.DataFrame, at: np.ndarray) -> np.ndarray:
    """What the device did last before each instant: "kernel", "memset", or the copy."""
    ops = ops.sort_values("end_us", kind="stable")
    i = np.searchsorted(ops.end_us.to_numpy(), at, side="right") - 1
    kinds = ops.kind.astype(str).to_numpy(dtype=object)
    copies = ops["copy"].astype(str).to_numpy(dtype=object)
    label = np.where(copies != "", copies + " copy", kinds)
    return np.append(label, "")[i]
