"""The in-memory form every trace reader produces: three columnar tables, no event objects.

A reader turns one file (one rank) into a `TraceData`:
- `ranges`: host ranges (PyTorch `record_function` / user annotations, NVTX push-pop and
  start-end ranges): name, start_us, end_us, pid, tid;
- `calls`: CUDA runtime / driver calls, the launchers of device work: name, start_us,
  end_us, pid, tid, correlation;
- `ops`: device activity (kernels, memcpy, memset): kind, start_us, end_us, device, stream,
  correlation, pid (the launching process, or UNKNOWN_PID where the file holds only one),
  copy (a memcpy's direction and host memory, e.g. "DtoH pageable"; "" otherwise).
Times are float µs from the file's own first timestamp, converted from exact integer ns
(`timestamps`); `origin_ns` is that instant on an absolute clock (Unix epoch ns) when the
file says so, which is how several ranks line up.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


class OpKind(enum.StrEnum):
    """What a device op is."""

    KERNEL = "kernel"
    MEMCPY = "memcpy"
    MEMSET = "memset"


KERNEL, MEMCPY, MEMSET = OpKind.KERNEL, OpKind.MEMCPY, OpKind.MEMSET
OP_KINDS = tuple(k.value for k in OpKind)
UNKNOWN_PID = -1

RANGE_COLUMNS = ["name", "start_us", "end_us", "pid", "tid"]
CALL_COLUMNS = ["name", "start_us", "end_us", "pid", "tid", "correlation"]
OP_COLUMNS = ["kind", "start_us", "end_us", "device", "stream", "correlation", "pid", "copy"]
# "Memcpy DtoH (Device -> Pageable)", as Kineto names a copy
_COPY_NAME = re.compile(r"Memcpy (\w+) \((\w+) -> (\w+)\)")


class TraceError(Exception):
    """A trace that cannot be read or analyzed; the message names the file and the problem."""


@dataclass
class TraceData:
    """One rank's trace as three tables (see the module docstring)."""

    path: str
    format: str  # "chrome" or "nsys"
    rank: int
    ranges: pd.DataFrame
    calls: pd.DataFrame
    ops: pd.DataFrame
    origin_ns: int | None = None
    device_name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What the file held, for run.json and error messages."""
        kinds = self.ops.kind.value_counts() if len(self.ops) else pd.Series(dtype=int)
        return {
            "path": self.path,
            "format": self.format,
            "rank": self.rank,
            "host_ranges": len(self.ranges),
            "runtime_calls": len(self.calls),
            "kernels": int(kinds.get(KERNEL, 0)),
            "memcpys": int(kinds.get(MEMCPY, 0)),
            "memsets": int(kinds.get(MEMSET, 0)),
            "origin_ns": self.origin_ns,
            "device_name": self.device_name,
            **self.meta,
        }


def ranges_frame(names, starts, ends, pids, tids) -> pd.DataFrame:
    """Host ranges as a table; names become a categorical (few distinct, many rows)."""
    return pd.DataFrame(
        {
            "name": pd.Categorical(names),
            "start_us": np.asarray(starts, dtype=float),
            "end_us": np.asarray(ends, dtype=float),
            "pid": np.asarray(pids, dtype=np.int64),
            "tid": np.asarray(tids, dtype=np.int64),
        },
        columns=RANGE_COLUMNS,
    )


def calls_frame(names, starts, ends, pids, tids, correlations) -> pd.DataFrame:
    """Runtime calls as a table: host ranges plus the correlation id of each call."""
    frame = ranges_frame(names, starts, ends, pids, tids)
    frame["correlation"] = np.asarray(correlations, dtype=np.int64)
    return frame[CALL_COLUMNS]


def ops_frame(kinds, starts, ends, devices, streams, correlations, pids, copies=None):
    """Device activity as a table; `kinds` holds values of OP_KINDS, `copies` copy details."""
    copies = [""] * len(kinds) if copies is None else copies
    return pd.DataFrame(
        {
            "kind": pd.Categorical(kinds, categories=OP_KINDS),
            "start_us": np.asarray(starts, dtype=float),
            "end_us": np.asarray(ends, dtype=float),
            "device": np.asarray(devices, dtype=np.int64),
            "stream": np.asarray(streams, dtype=np.int64),
            "correlation": np.asarray(correlations, dtype=np.int64),
            "pid": np.asarray(pids, dtype=np.int64),
            "copy": pd.Categorical(copies),
        },
        columns=OP_COLUMNS,
    )


def copy_detail(name: str) -> str:
    """A Kineto memcpy's name as direction and host memory: "DtoH pageable", "DtoD"."""
    found = _COPY_NAME.search(name)
    if not found:
        return ""
    direction, source, target = found.groups()
    host = target if direction.endswith("toH") else source
    memory = host.lower() if host.lower() in ("pageable", "pinned") else ""
    return f"{direction} {memory}".strip()


def shift_times(data: TraceData, offset_us: float) -> None:
    """Add `offset_us` to every timestamp (aligning ranks on one clock)."""
    for frame in (data.ranges, data.calls, data.ops):
        frame["start_us"] += offset_us
        frame["end_us"] += offset_us
