"""`ChromeColumns`: a Chrome trace's events accumulated as numpy columns, times in int ns.

Raw events (`add_pieces`) are read column by column with the patterns of `chrome_fields`.
Decoded events (`add`, from the exact path, their floats as `Decimal`) are converted with
list comprehensions on the assumption that they are well formed. A group that breaks
either assumption is redone event by event, skipping (and counting) malformed events.
"""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd

from stepgap.analyze import chrome_fields as F
from stepgap.analyze.jsonstream import decode_pieces
from stepgap.analyze.timestamps import ns_to_us, scalar_to_ns, text_to_ns, values_to_ns
from stepgap.analyze.trace import (
    OP_KINDS,
    UNKNOWN_PID,
    OpKind,
    calls_frame,
    copy_detail,
    ops_frame,
    ranges_frame,
)

CAUGHT = (KeyError, TypeError, ValueError, OverflowError, AttributeError, ArithmeticError)
MEMCPY_CODE = F.OP_CODES[OpKind.MEMCPY]
OP_WIDTH, CALL_WIDTH, RANGE_WIDTH = 8, 6, 5


class ChromeColumns:
    """Accumulates the three tables from a trace's events (see the module docstring)."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.ident = F.Identities()
        self.range_names, self.call_names, self.copy_names = F.Names(), F.Names(), F.Names()
        self.ranges: list[tuple[np.ndarray, ...]] = []
        self.calls: list[tuple[np.ndarray, ...]] = []
        self.ops: list[tuple[np.ndarray, ...]] = []
        self.malformed = 0
        self.decoded_groups = 0  # groups the columnar reader handed to json (diagnostics)

    # -- raw events, column by column ------------------------------------------------------------
    def add_pieces(self, groups: dict[bytes, list[bytes]]) -> None:
        for key, pieces in groups.items():
            category = key.decode("ascii", "replace")
            columns, into = self._columnar(category, pieces)
            if columns is None:
                self.decoded_groups += 1
                self.add(decode_pieces(pieces, self.path, Decimal))
            elif len(columns[0]):
                into.append(columns)

    def _columnar(self, category: str, pieces: list[bytes]):
        if category in F.DEVICE_CATEGORIES:
            return self._ops_columnar(pieces, category), self.ops
        if category in F.CALL_CATEGORIES:
            return self._named_columnar(pieces, F.CALL_FIELDS, self.call_names), self.calls
        if category in F.RANGE_CATEGORIES:
            return self._named_columnar(pieces, F.RANGE_FIELDS, self.range_names), self.ranges
        return None, None

    def _common(self, pieces: list[bytes], names: tuple[str, ...]):
        """Phase mask, start and end ns and the named int fields, or None when the columns
        disagree."""
        blob = b"\n".join(pieces)
        phases = F.PHASE.findall(blob)
        found = F.find_fields(blob, len(pieces), names)
        if found is None or len(phases) != len(pieces):
            return None
        try:
            start, duration = text_to_ns(found["ts"]), text_to_ns(found["dur"])
            ints = {k: found[k].astype(np.int64) for k in names if k not in ("ts", "dur")}
        except (ValueError, OverflowError):
            return None
        if any(len(v) and np.abs(v).max() >= F.INT64_LIMIT for v in ints.values()):
            return None
        keep = np.array(phases) == b"X"
        return blob, keep, start, start + np.maximum(duration, 0), ints

    def _ops_columnar(self, pieces: list[bytes], category: str) -> tuple[np.ndarray, ...] | None:
        common = self._common(pieces, F.OP_FIELDS)
        if common is None:
            return None
        blob, keep, start, end, ints = common
        code = F.OP_CODES[F.DEVICE_CATEGORIES[category]]
        copies = self._copies(blob, code, len(pieces))
        if copies is None:
            return None
        correlation = ints["correlation"]
        columns = (
            np.full(len(pieces), code, dtype=np.int8),
            start,
            end,
            ints["device"],
            ints["stream"],
            np.where(correlation > 0, correlation, 0),
            np.full(len(pieces), UNKNOWN_PID),
            copies,
        )
        return tuple(c[keep] for c in columns)

    def _copies(self, blob: bytes, code: int, count: int) -> np.ndarray | None:
        """Copy details (direction, host memory) of memcpy events, from their names."""
        if code != MEMCPY_CODE:
            return self.copy_names.encode([""] * count)
        names = self._texts(F.NAME.findall(blob), count)
        return None if names is None else self.copy_names.encode(list(map(copy_detail, names)))

    @staticmethod
    def _texts(raw_names: list[bytes], count: int) -> list[str] | None:
        if len(raw_names) != count:
            return None
        try:
            return [
                r.decode("utf-8") if b"\\" not in r else json.loads(b'"' + r + b'"')
                for r in raw_names
            ]
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def _named_columnar(
        self, pieces: list[bytes], names: tuple[str, ...], table: F.Names
    ) -> tuple[np.ndarray, ...] | None:
        common = self._common(pieces, names)
        if common is None:
            return None
        blob, keep, start, end, ints = common
        texts = self._texts(F.NAME.findall(blob), len(pieces))
        if texts is None:
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
                if category in F.DEVICE_CATEGORIES:
                    ops.append(event)
                elif category in F.CALL_CATEGORIES:
                    calls.append(event)
                elif category in F.RANGE_CATEGORIES or (
                    category in F.LEGACY_RANGE_CATEGORIES
                    and str(event.get("name", "")).startswith(F.LEGACY_RANGE_PREFIX)
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
        except CAUGHT:
            rows = []
            for event in batch:
                try:
                    rows.append(careful(event))
                except CAUGHT:
                    self.malformed += 1
            return tuple(np.asarray(column) for column in zip(*rows, strict=True)) if rows else ()

    @staticmethod
    def _times_fast(batch: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        start = values_to_ns([e["ts"] for e in batch])
        duration = values_to_ns([e["dur"] for e in batch])
        return start, start + np.maximum(duration, 0)

    @staticmethod
    def _ints(values: list) -> np.ndarray:
        if not all(type(v) is int for v in values):
            raise TypeError("not plain ints")
        array = np.array(values, dtype=np.int64)
        if len(array) and np.abs(array).max() >= F.INT64_LIMIT:
            raise OverflowError
        return array

    def _ops_fast(self, batch: list[dict]) -> tuple[np.ndarray, ...]:
        start, end = self._times_fast(batch)
        args = [e["args"] for e in batch]
        correlation = self._ints([a.get("correlation", a.get("correlation id", 0)) for a in args])
        kinds = [F.DEVICE_CATEGORIES[e["cat"]] for e in batch]
        return (
            np.array([F.OP_CODES[k] for k in kinds], dtype=np.int8),
            start,
            end,
            self._ints([a["device"] for a in args]),
            self._ints([a["stream"] for a in args]),
            np.where(correlation > 0, correlation, 0),
            np.full(len(batch), UNKNOWN_PID),
            self.copy_names.encode([_copy(e, k) for e, k in zip(batch, kinds, strict=True)]),
        )

    def _calls_fast(self, batch: list[dict]) -> tuple[np.ndarray, ...]:
        start, end = self._times_fast(batch)
        args = [e["args"] for e in batch]
        correlation = self._ints([a.get("correlation", a.get("correlation id", 0)) for a in args])
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
    def _times(event: dict) -> tuple[int, int]:
        start, duration = event.get("ts"), event.get("dur")
        if start is None or duration is None:
            raise ValueError("event without ts/dur")
        start = scalar_to_ns(start)
        return start, start + max(scalar_to_ns(duration), 0)

    def _op(self, event: dict) -> tuple:
        start, end = self._times(event)
        args = event.get("args") or {}
        device = self.ident(args.get("device", event.get("pid")))
        stream = self.ident(args.get("stream", event.get("tid")))
        kind = F.DEVICE_CATEGORIES[event["cat"]]
        copy = self.copy_names.encode([_copy(event, kind)])[0]
        return (
            F.OP_CODES[kind],
            start,
            end,
            device,
            stream,
            F.correlation_of(args),
            UNKNOWN_PID,
            copy,
        )

    def _call(self, event: dict) -> tuple:
        start, end = self._times(event)
        correlation = F.correlation_of(event.get("args") or {})
        name = self.call_names.encode([str(event.get("name", ""))])[0]
        pid, tid = self.ident(event.get("pid")), self.ident(event.get("tid"))
        return name, start, end, pid, tid, correlation

    def _range(self, event: dict) -> tuple:
        start, end = self._times(event)
        name = self.range_names.encode([str(event.get("name", ""))])[0]
        pid, tid = self.ident(event.get("pid")), self.ident(event.get("tid"))
        return name, start, end, pid, tid

    # -- the tables --------------------------------------------------------------------------
    def first_ns(self) -> int | None:
        """The earliest start of any kept event (the file's time zero)."""
        starts = [
            int(p[1].min()) for p in (*self.ranges, *self.calls, *self.ops) if p and len(p[1])
        ]
        return min(starts) if starts else None

    def tables(self, origin_ns: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The three tables, times in µs from `origin_ns`."""
        ranges = _stack(self.ranges, RANGE_WIDTH, origin_ns)
        calls = _stack(self.calls, CALL_WIDTH, origin_ns)
        ops = _stack(self.ops, OP_WIDTH, origin_ns)
        kinds = pd.Categorical.from_codes(ops[0].astype(np.int8), categories=OP_KINDS)
        return (
            ranges_frame(self.range_names.decode(ranges[0]), *ranges[1:]),
            calls_frame(self.call_names.decode(calls[0]), *calls[1:]),
            ops_frame(
                kinds,
                ops[1],
                ops[2],
                ops[3],
                ops[4],
                ops[5],
                ops[6],
                self.copy_names.decode(ops[7]),
            ),
        )


def _copy(event: dict, kind: OpKind) -> str:
    return copy_detail(str(event.get("name", ""))) if kind is OpKind.MEMCPY else ""


def _stack(parts: list[tuple[np.ndarray, ...]], width: int, origin_ns: int) -> list[np.ndarray]:
    """The parts' columns end to end; columns 1 and 2 (start, end ns) as µs from the origin."""
    parts = [p for p in parts if p]
    if not parts:
        return [np.zeros(0, dtype=np.int64)] * width
    columns = [np.concatenate([p[i] for p in parts]) for i in range(width)]
    columns[1:3] = [ns_to_us(c, origin_ns) for c in columns[1:3]]
    return columns
