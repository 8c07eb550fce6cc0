"""PyTorch profiler (Kineto) Chrome traces: `.json` or `.json.gz`, read as columns.

What is taken from a trace (complete events, `"ph": "X"`):
- device activity: categories `kernel`, `gpu_memcpy`, `gpu_memset` (and the older
  `Kernel`, `Memcpy`, `Memset`), with `args.device`, `args.stream`, `args.correlation`;
- launching calls: `cuda_runtime`, `cuda_driver` (older `Runtime`, `Driver`) with
  `args.correlation`;
- host ranges: `user_annotation` (`record_function`, `ProfilerStep#N`), and `ProfilerStep`
  ranges of older traces filed as `cpu_op` / `Operator`.
Timestamps are µs, either absolute or relative to `baseTimeNanoseconds` (newer Kineto).
A Kineto file is one process, so a device op's correlation id alone names its launch.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stepgap.analyze.jsonstream import EventStream, Progress, decode_pieces
from stepgap.analyze.trace import (
    KERNEL,
    MEMCPY,
    MEMSET,
    OP_KINDS,
    UNKNOWN_PID,
    TraceData,
    TraceError,
    calls_frame,
    ops_frame,
    ranges_frame,
    shift_times,
)

DEVICE_CATEGORIES = {
    "kernel": KERNEL,
    "Kernel": KERNEL,
    "gpu_memcpy": MEMCPY,
    "Memcpy": MEMCPY,
    "gpu_memset": MEMSET,
    "Memset": MEMSET,
}
OP_CODES = {kind: code for code, kind in enumerate(OP_KINDS)}
CALL_CATEGORIES = {"cuda_runtime", "cuda_driver", "Runtime", "Driver"}
RANGE_CATEGORIES = {"user_annotation"}
LEGACY_RANGE_CATEGORIES = {"cpu_op", "Operator"}  # only their ProfilerStep ranges
LEGACY_RANGE_PREFIX = "ProfilerStep"
# Which events to read, filed by category: a wanted category, or (no group) an older trace's
# ProfilerStep range. Everything else is dropped before decoding.
CLASSIFY = re.compile(
    rb'"cat"\s*:\s*"(kernel|gpu_memcpy|gpu_memset|cuda_runtime|cuda_driver|user_annotation'
    rb'|Kernel|Memcpy|Memset|Runtime|Driver)"|"ProfilerStep'
)
EPOCH_US = 1e14  # absolute timestamps are Unix-epoch µs; relative ones are far smaller

# Columnar reading of raw events: one regex per field over a whole group of events.
_NUMBER = rb"\s*:\s*(-?[0-9][0-9.eE+-]*)"
_SINGLE = {
    name: re.compile(b'"' + name.encode() + b'"' + _NUMBER)
    for name in ("ts", "dur", "pid", "tid", "device", "stream", "correlation")
}


def _side_by_side(*keys: str, unread: tuple[str, ...] = ()) -> re.Pattern[bytes]:
    """Consecutive `"key": number` members in this order; `unread` ones are not captured."""
    members = [
        b'"' + key.encode() + b'"' + (rb"\s*:\s*-?\d+" if key in unread else _NUMBER)
        for key in keys
    ]
    return re.compile(rb"\s*,\s*".join(members))


# Kineto writes these fields side by side: one pass reads them all. A group in which such a
# run is not found once per event is read with the single-field patterns instead.
_SIDE_BY_SIDE = [
    (("pid", "tid", "ts", "dur"), _side_by_side("pid", "tid", "ts", "dur")),
    (("ts", "dur"), _side_by_side("ts", "dur")),
    (
        ("device", "stream", "correlation"),
        _side_by_side("device", "context", "stream", "correlation", unread=("context",)),
    ),
]
_PHASE = re.compile(rb'"ph"\s*:\s*"([^"\\]*)"')
_NAME = re.compile(rb'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
OP_FIELDS = ("ts", "dur", "device", "stream", "correlation")
CALL_FIELDS = ("ts", "dur", "pid", "tid", "correlation")
RANGE_FIELDS = ("ts", "dur", "pid", "tid")


INT64_LIMIT = 2**62  # ids beyond this are not numbers any tool writes; treated as names


def _number(value: Any) -> float | None:
    """A finite timestamp or duration, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _correlation(args: dict) -> int:
    value = args.get("correlation", 0)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < INT64_LIMIT:
        return value
    return 0


class _Identities:
    """pid / tid values as ints: numbers stay, other strings get stable negative ids."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def __call__(self, value: Any) -> int:
        if isinstance(value, int) and -INT64_LIMIT < value < INT64_LIMIT:
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < INT64_LIMIT:
            return int(value)
        text = str(value)
        digits = text.rsplit(" ", 1)[-1]
        if digits.isdigit() and len(digits) < 19:  # "stream 7" in older traces
            return int(digits)
        return self.names.setdefault(text, -1 - len(self.names))


class _Names:
    """Strings as small int codes (a trace repeats a few thousand names millions of times)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def encode(self, names: list) -> np.ndarray:
        codes = self.codes
        return np.fromiter(
            (codes.setdefault(str(n), len(codes)) for n in names), np.int64, len(names)
        )

    def decode(self, codes: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=list(self.codes))


class ChromeColumns:
    """Accumulates the three tables from a trace's events, as numpy arrays.

    Raw events (`add_pieces`) are read column by column: one regex per field over a group
    of events of one category, checked to find each field exactly once per event. Decoded
    events (`add`) are converted with list comprehensions on the assumption that they are
    well formed. A group that breaks either assumption is redone event by event, skipping
    (and counting) malformed events.
    """

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.ident = _Identities()
        self.range_names, self.call_names = _Names(), _Names()
        self.ranges: list[tuple[np.ndarray, ...]] = []
        self.calls: list[tuple[np.ndarray, ...]] = []
        self.ops: list[tuple[np.ndarray, ...]] = []
        self.malformed = 0
        self.decoded_groups = 0  # groups the columnar reader handed to json (diagnostics)

    # -- raw events, column by column ------------------------------------------------------------
    def add_pieces(self, groups: dict[bytes, list[bytes]]) -> None:
        for key, pieces in groups.items():
            category = key.decode("ascii", "replace")
            columns = None
            if category in DEVICE_CATEGORIES:
                columns = self._ops_columnar(pieces, OP_CODES[DEVICE_CATEGORIES[category]])
                into = self.ops
            elif category in CALL_CATEGORIES:
                columns = self._named_columnar(pieces, CALL_FIELDS, self.call_names)
                into = self.calls
            elif category in RANGE_CATEGORIES:
                columns = self._named_columnar(pieces, RANGE_FIELDS, self.range_names)
                into = self.ranges
            if columns is None:
                self.decoded_groups += 1
                self.add(decode_pieces(pieces, self.path))
            elif len(columns[0]):
                into.append(columns)

    @staticmethod
    def _fields(blob: bytes, count: int, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """Each named field of every event in `blob` as a bytes array, or None unless each
        occurs exactly once per event."""
        found: dict[str, np.ndarray] = {}
        for covered, pattern in _SIDE_BY_SIDE:
            if set(covered) <= set(names) and not set(covered) & set(found):
                values = pattern.findall(blob)
                if len(values) == count and count:
                    table = np.array(values, dtype=bytes)
                    found.update((name, table[:, i]) for i, name in enumerate(covered))
        for name in names:
            if name not in found:
                values = _SINGLE[name].findall(blob)
                if len(values) != count:
                    return None
                found[name] = np.array(values, dtype=bytes)
        return found

    def _common(self, pieces: list[bytes], names: tuple[str, ...]):
        """Phase mask, start, end and the named fields, or None when the columns disagree."""
        blob = b"\n".join(pieces)
        phases = _PHASE.findall(blob)
        found = self._fields(blob, len(pieces), names)
        if found is None or len(phases) != len(pieces):
            return None
        try:
            start = found["ts"].astype(np.float64)
            duration = found["dur"].astype(np.float64)
            ints = {k: found[k].astype(np.int64) for k in names if k not in ("ts", "dur")}
        except (ValueError, OverflowError):
            return None
        if not (np.isfinite(start).all() and np.isfinite(duration).all()):
            return None
        if any(len(v) and np.abs(v).max() >= INT64_LIMIT for v in ints.values()):
            return None
        keep = np.array(phases) == b"X"
        return blob, keep, start, start + np.maximum(duration, 0.0), ints

    def _ops_columnar(self, pieces: list[bytes], code: int) -> tuple[np.ndarray, ...] | None:
        common = self._common(pieces, OP_FIELDS)
        if common is None:
            return None
        _, keep, start, end, ints = common
        correlation = ints["correlation"]
        columns = (
            np.full(len(pieces), code, dtype=np.int8),
            start,
            end,
            ints["device"],
            ints["stream"],
            np.where(correlation > 0, correlation, 0),
            np.full(len(pieces), UNKNOWN_PID),
        )
        return tuple(c[keep] for c in columns)

    def _named_columnar(
        self, pieces: list[bytes], names: tuple[str, ...], table: _Names
    ) -> tuple[np.ndarray, ...] | None:
        common = self._common(pieces, names)
        if common is None:
            return None
        blob, keep, start, end, ints = common
        raw_names = _NAME.findall(blob)
        if len(raw_names) != len(pieces):
            return None
        try:
            texts = [
                r.decode("utf-8") if b"\\" not in r else json.loads(b'"' + r + b'"')
                for r in raw_names
            ]
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        columns = [table.encode(texts), start, end, ints["pid"], ints["tid"]]
        if "correlation" in ints:
            correlation = ints["correlation"]
            columns.append(np.where(correlation > 0, correlation, 0))
        return tuple(c[keep] for c in columns)

    # -- decoded events ------------------------------------------------------------------------
    def add(self, events: list[dict]) -> None:
        ops, calls, ranges = [], [], []
        for event in events:
            try:
                category = event.get("cat")
                if event.get("ph") != "X" or category is None:
                    continue
                if category in DEVICE_CATEGORIES:
                    ops.append(event)
                elif category in CALL_CATEGORIES:
                    calls.append(event)
                elif category in RANGE_CATEGORIES or (
                    category in LEGACY_RANGE_CATEGORIES
                    and str(event.get("name", "")).startswith(LEGACY_RANGE_PREFIX)
                ):
                    ranges.append(event)
            except TypeError:  # an unhashable category
                self.malformed += 1
        for batch, fast, careful, into in (
            (ops, self._ops_fast, self._op, self.ops),
            (calls, self._calls_fast, self._call, self.calls),
            (ranges, self._ranges_fast, self._range, self.ranges),
        ):
            if batch:
                into.append(self._convert(batch, fast, careful))

    def _convert(self, batch: list[dict], fast, careful) -> tuple[np.ndarray, ...]:
        try:
            return fast(batch)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            rows = []
            for event in batch:
                try:
                    rows.append(careful(event))
                except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
                    self.malformed += 1
            return tuple(np.asarray(column) for column in zip(*rows, strict=True)) if rows else ()

    @staticmethod
    def _times_fast(batch: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        start = np.array([e["ts"] for e in batch], dtype=float)
        duration = np.array([e["dur"] for e in batch], dtype=float)
        if not (np.isfinite(start).all() and np.isfinite(duration).all()):
            raise ValueError("non-finite time")
        return start, start + np.maximum(duration, 0.0)

    @staticmethod
    def _ints(values: list) -> np.ndarray:
        if not all(type(v) is int for v in values):
            raise TypeError("not plain ints")
        array = np.array(values, dtype=np.int64)
        if len(array) and np.abs(array).max() >= INT64_LIMIT:
            raise OverflowError
        return array

    def _ops_fast(self, batch: list[dict]) -> tuple[np.ndarray, ...]:
        start, end = self._times_fast(batch)
        args = [e["args"] for e in batch]
        correlation = self._ints([a.get("correlation", 0) for a in args])
        return (
            np.array([OP_CODES[DEVICE_CATEGORIES[e["cat"]]] for e in batch], dtype=np.int8),
            start,
            end,
            self._ints([a["device"] for a in args]),
            self._ints([a["stream"] for a in args]),
            np.where(correlation > 0, correlation, 0),
            np.full(len(batch), UNKNOWN_PID),
        )

    def _calls_fast(self, batch: list[dict]) -> tuple[np.ndarray, ...]:
        start, end = self._times_fast(batch)
        correlation = self._ints([e["args"].get("correlation", 0) for e in batch])
        return (
            self.call_names.encode([e["name"] for e in batch]),
            start,
            end,
            self._ints([e["pid"] for e in batch]),
            self._ints([e["tid"] for e in batch]),
            np.where(correlation > 0, correlation, 0),
        )

    def _ranges_fast(self, batch: list[dict]) -> tuple[np.ndarray, ...]:
        start, end = self._times_fast(batch)
        return (
            self.range_names.encode([e["name"] for e in batch]),
            start,
            end,
            self._ints([e["pid"] for e in batch]),
            self._ints([e["tid"] for e in batch]),
        )

    # -- event by event, for batches the fast path rejects ------------------------------------
    @staticmethod
    def _times(event: dict) -> tuple[float, float]:
        start, duration = _number(event.get("ts")), _number(event.get("dur"))
        if start is None or duration is None:
            raise ValueError("event without ts/dur")
        return start, start + max(duration, 0.0)

    def _op(self, event: dict, kind: str | None = None) -> tuple:
        start, end = self._times(event)
        args = event.get("args") or {}
        device = self.ident(args.get("device", event.get("pid")))
        stream = self.ident(args.get("stream", event.get("tid")))
        code = OP_CODES[DEVICE_CATEGORIES[event["cat"]]]
        return code, start, end, device, stream, _correlation(args), UNKNOWN_PID

    def _call(self, event: dict) -> tuple:
        start, end = self._times(event)
        correlation = _correlation(event.get("args") or {})
        name = self.call_names.encode([event.get("name", "")])[0]
        pid, tid = self.ident(event.get("pid")), self.ident(event.get("tid"))
        return name, start, end, pid, tid, correlation

    def _range(self, event: dict) -> tuple:
        start, end = self._times(event)
        name = self.range_names.encode([event.get("name", "")])[0]
        pid, tid = self.ident(event.get("pid")), self.ident(event.get("tid"))
        return name, start, end, pid, tid

    # -- the tables --------------------------------------------------------------------------
    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        ranges = _stack(self.ranges, 5)
        calls = _stack(self.calls, 6)
        ops = _stack(self.ops, 7)
        ranges_table = ranges_frame(self.range_names.decode(ranges[0]), *ranges[1:])
        calls_table = calls_frame(self.call_names.decode(calls[0]), *calls[1:])
        kinds = pd.Categorical.from_codes(ops[0].astype(np.int8), categories=OP_KINDS)
        return ranges_table, calls_table, ops_frame(kinds, *ops[1:])


def _stack(parts: list[tuple[np.ndarray, ...]], width: int) -> list[np.ndarray]:
    parts = [p for p in parts if p]
    if not parts:
        return [np.zeros(0, dtype=np.int64)] * width
    return [np.concatenate([p[i] for p in parts]) for i in range(width)]


def read_chrome(path: Path, rank: int, progress: Progress | None = None) -> TraceData:
    """Read one Chrome / Kineto trace file into a `TraceData` (rank from the trace's
    `distributedInfo` when present, else `rank`)."""
    stream = EventStream(Path(path), CLASSIFY, progress)
    columns = ChromeColumns(str(path))
    for batch in stream:
        columns.add_pieces(batch.pieces)
        columns.add(batch.events)
    header = stream.header
    ranges, calls, ops = columns.tables()
    data = TraceData(
        path=str(path),
        format="chrome",
        rank=_rank(header, rank),
        ranges=ranges,
        calls=calls,
        ops=ops,
        device_name=_device_name(header, set(ops.device.unique().tolist())),
        meta={
            "malformed_events": columns.malformed,
            "exact_fallbacks": stream.exact_fallbacks,
            "decoded_groups": columns.decoded_groups,
        },
    )
    starts = [f.start_us.min() for f in (data.ranges, data.calls, data.ops) if len(f)]
    origin_us = min(starts) if starts else 0.0
    shift_times(data, -origin_us)
    data.origin_ns = _origin_ns(header, origin_us)
    return data


def _rank(header: dict, default: int) -> int:
    info = header.get("distributedInfo")
    rank = info.get("rank") if isinstance(info, dict) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0 else default


def _device_name(header: dict, devices: set[int]) -> str | None:
    properties = header.get("deviceProperties")
    if not isinstance(properties, list):
        return None
    names = {
        p.get("id"): p.get("name")
        for p in properties
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    }
    used = [names[d] for d in sorted(devices) if d in names]
    return used[0] if used else next(iter(names.values()), None)


def _origin_ns(header: dict, origin_us: float) -> int | None:
    """The absolute time of the file's first event, when the trace says what its clock is."""
    base = header.get("baseTimeNanoseconds")
    try:
        if isinstance(base, (int, float)) and not isinstance(base, bool):
            return int(base) + round(origin_us * 1000)
        if origin_us > EPOCH_US:
            return round(origin_us * 1000)
    except (OverflowError, ValueError):
        raise TraceError("timestamps out of range") from None
    return None
