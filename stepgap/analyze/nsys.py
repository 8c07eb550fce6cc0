"""Nsight Systems SQLite exports (`nsys export --type sqlite`), read with sqlite3.

Tables used (Nsight Systems' documented export schema; absent tables are empty):
- `StringIds(id, value)`: names, referenced by id;
- `NVTX_EVENTS(start, end, eventType, text, textId, globalTid, ...)`: push-pop (59) and
  start-end (60) ranges, named by `text` or `textId`;
- `CUPTI_ACTIVITY_KIND_RUNTIME` / `_DRIVER(start, end, globalTid, correlationId, nameId)`;
- `CUPTI_ACTIVITY_KIND_KERNEL`, `_MEMCPY`, `_MEMSET(start, end, deviceId, streamId,
  correlationId, globalPid)`, and a memcpy's `copyKind`, `srcKind`, `dstKind` when present
  (CUPTI's CUpti_ActivityMemcpyKind and CUpti_ActivityMemoryKind codes);
- `TARGET_INFO_SESSION_START_TIME(utcEpochNs)` and `TARGET_INFO_GPU(name)` when present.
Times are integer ns from the session start; `globalTid` packs pid and tid as
`pid = globalTid / 0x1000000 % 0x1000000`, `tid = globalTid % 0x1000000`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from stepgap.analyze.timestamps import NS_PER_US
from stepgap.analyze.trace import (
    KERNEL,
    MEMCPY,
    MEMSET,
    TraceData,
    TraceError,
    calls_frame,
    ops_frame,
    ranges_frame,
)

PUSH_POP_RANGE, START_END_RANGE = 59, 60
ID_SHIFT = 0x1000000
ID_LIMIT = 2**62
OP_TABLES = {
    KERNEL: "CUPTI_ACTIVITY_KIND_KERNEL",
    MEMCPY: "CUPTI_ACTIVITY_KIND_MEMCPY",
    MEMSET: "CUPTI_ACTIVITY_KIND_MEMSET",
}
CALL_TABLES = ("CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_DRIVER")
NVTX_TABLE = "NVTX_EVENTS"
REQUIRED = {
    NVTX_TABLE: {"start", "end", "eventType", "globalTid"},
    **{t: {"start", "end", "globalTid", "correlationId", "nameId"} for t in CALL_TABLES},
    **{
        t: {"start", "end", "deviceId", "streamId", "correlationId", "globalPid"}
        for t in OP_TABLES.values()
    },
}
COPY_KINDS = {1: "HtoD", 2: "DtoH", 8: "DtoD", 9: "HtoH", 10: "PtoP"}  # CUpti_ActivityMemcpyKind
HOST_MEMORY = {1: "pageable", 2: "pinned"}  # CUpti_ActivityMemoryKind
_PID = f"(({{col}} / {ID_SHIFT}) % {ID_SHIFT})"
_TID = f"({{col}} % {ID_SHIFT})"


class _Export:
    """An open export: which tables and columns it has, and queries returning DataFrames."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            rows = self.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            self.tables = {name for (name,) in rows}
        except sqlite3.Error as error:
            raise TraceError(f"{path}: not a readable SQLite database ({error})") from None
        self.columns = {t: self._columns(t) for t in self.tables & set(REQUIRED)}

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.connection.execute(f'PRAGMA table_info("{table}")')}

    def check(self) -> None:
        known = set(REQUIRED) & self.tables
        if "StringIds" not in self.tables or not known:
            raise TraceError(
                f"{self.path} is an SQLite database but not an Nsight Systems export "
                "(no StringIds, NVTX_EVENTS or CUPTI_ACTIVITY_KIND_* tables)"
            )
        for table in sorted(known):
            missing = REQUIRED[table] - self.columns[table]
            if missing:
                raise TraceError(
                    f"{self.path}: table {table} lacks column(s) {', '.join(sorted(missing))}; "
                    "not the Nsight Systems export schema this reader knows"
                )

    def query(self, sql: str) -> pd.DataFrame:
        try:
            return pd.read_sql_query(sql, self.connection)
        except (sqlite3.Error, pd.errors.DatabaseError, ValueError, OverflowError) as error:
            raise TraceError(f"{self.path}: cannot read the export ({error})") from None

    def scalar(self, sql: str):
        try:
            row = self.connection.execute(sql).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def close(self) -> None:
        self.connection.close()


def _numbers(frame: pd.DataFrame, times: list[str], ids: list[str]) -> pd.DataFrame:
    """Numeric columns as numbers: SQLite stores whatever it is given, and an export may
    hold NULLs. Rows without valid times are dropped; missing or absurd ids become 0."""
    if not len(frame):
        return frame
    frame = frame.copy()
    for column in times + ids:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=times)
    frame = frame[(frame.end >= frame.start) & (frame[times].abs() < ID_LIMIT).all(axis=1)]
    for column in ids:
        frame[column] = frame[column].where(frame[column].abs() < ID_LIMIT, 0).fillna(0)
    return frame


def _ranges(export: _Export) -> pd.DataFrame:
    if NVTX_TABLE not in export.columns:
        return ranges_frame([], [], [], [], [])
    columns = export.columns[NVTX_TABLE]
    text = "n.text" if "text" in columns else "NULL"
    name, join = text, ""
    if "textId" in columns:  # registered strings live in StringIds
        name, join = f"COALESCE({text}, s.value)", "LEFT JOIN StringIds s ON n.textId = s.id"
    frame = export.query(
        f"SELECT {name} AS name, n.start, n.end, "
        f"{_PID.format(col='n.globalTid')} AS pid, {_TID.format(col='n.globalTid')} AS tid "
        f"FROM {NVTX_TABLE} n {join} "
        f"WHERE n.eventType IN ({PUSH_POP_RANGE}, {START_END_RANGE}) "
        "AND n.end IS NOT NULL AND n.end >= n.start"
    )
    frame = _numbers(frame, ["start", "end"], ["pid", "tid"])
    return ranges_frame(
        frame.name.fillna("").astype(str), frame.start, frame.end, frame.pid, frame.tid
    )


def _calls(export: _Export) -> pd.DataFrame:
    frames = [
        export.query(
            "SELECT s.value AS name, r.start, r.end, "
            f"{_PID.format(col='r.globalTid')} AS pid, {_TID.format(col='r.globalTid')} AS tid, "
            f"r.correlationId AS correlation FROM {table} r "
            "LEFT JOIN StringIds s ON r.nameId = s.id WHERE r.end >= r.start"
        )
        for table in CALL_TABLES
        if table in export.columns
    ]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame = _numbers(frame, ["start", "end"], ["pid", "tid", "correlation"])
    if not len(frame):
        return calls_frame([], [], [], [], [], [])
    # "cudaLaunchKernel_v7000" -> "cudaLaunchKernel", as the CUDA API names it
    names = frame.name.fillna("").astype(str).str.replace(r"_v\d+$", "", regex=True)
    return calls_frame(names, frame.start, frame.end, frame.pid, frame.tid, frame.correlation)


def _ops(export: _Export) -> pd.DataFrame:
    frames = []
    for kind, table in OP_TABLES.items():
        if table not in export.columns:
            continue
        frame = export.query(
            "SELECT start, end, deviceId AS device, streamId AS stream, "
            f"correlationId AS correlation, {_PID.format(col='globalPid')} AS pid, "
            f"{_copy_columns(export.columns[table])} FROM {table} WHERE end >= start"
        )
        frames.append(frame.assign(kind=kind))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(frame):
        return ops_frame([], [], [], [], [], [], [])
    frame = _numbers(frame, ["start", "end"], ["device", "stream", "correlation", "pid"])
    return ops_frame(
        frame.kind,
        frame.start,
        frame.end,
        frame.device,
        frame.stream,
        frame.correlation,
        frame.pid,
        _copy_details(frame),
    )


def _copy_columns(columns: set[str]) -> str:
    """The memcpy detail columns a table has (NULL for those it lacks)."""
    return ", ".join(
        f"{name} AS {name}" if name in columns else f"NULL AS {name}"
        for name in ("copyKind", "srcKind", "dstKind")
    )


def _copy_details(frame: pd.DataFrame) -> list[str]:
    """ "DtoH pageable" and the like, from CUPTI's copy and memory kinds."""
    details = []
    for kind, copy, source, target in zip(
        frame.kind, frame.copyKind, frame.srcKind, frame.dstKind, strict=True
    ):
        direction = COPY_KINDS.get(_code(copy), "") if kind == MEMCPY else ""
        host = _code(target) if direction.endswith("toH") else _code(source)
        details.append(f"{direction} {HOST_MEMORY.get(host, '')}".strip() if direction else "")
    return details


def _code(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def read_nsys(path: Path, rank: int, progress: Callable[[int, int], None] | None = None):
    """Read one Nsight Systems SQLite export into a `TraceData` (ns become µs)."""
    export = _Export(Path(path))
    size = Path(path).stat().st_size
    try:
        export.check()
        steps = (_ranges, _calls, _ops)
        tables = []
        for done, read in enumerate(steps, start=1):
            tables.append(read(export))
            if progress:  # in bytes, as the JSON reader reports: the share of tables read
                progress(size * done // len(steps), size)
        ranges, calls, ops = tables
        session_ns = export.scalar("SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME")
        device_name = export.scalar("SELECT name FROM TARGET_INFO_GPU ORDER BY id LIMIT 1")
    finally:
        export.close()
    # Times are ns from the session start (exact in a float for 100 days): µs from the first
    starts = [f.start_us.min() for f in (ranges, calls, ops) if len(f)]
    origin = int(min(starts)) if starts else 0
    for frame in (ranges, calls, ops):
        frame["start_us"] = (frame.start_us - origin) / NS_PER_US
        frame["end_us"] = (frame.end_us - origin) / NS_PER_US
    data = TraceData(str(path), "nsys", rank, ranges, calls, ops, device_name=device_name)
    if isinstance(session_ns, int):
        data.origin_ns = session_ns + origin
    return data
