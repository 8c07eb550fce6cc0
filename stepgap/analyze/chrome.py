"""PyTorch profiler (Kineto) Chrome traces, `.json` or `.json.gz`, read as columns.

Which events become which table is `chrome_fields`' business, how they are read
`chrome_columns`'; this module reads a file: stream its events, build the tables with times
from the file's first event, and find the absolute clock and rank in its header.
Timestamps are µs, either absolute (Unix epoch) or relative to `baseTimeNanoseconds`
(newer Kineto); both are read as exact integer ns. A Kineto file is one process, so a device
op's correlation id alone names its launch.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from stepgap.analyze.chrome_columns import ChromeColumns
from stepgap.analyze.chrome_fields import CLASSIFY
from stepgap.analyze.jsonstream import EventStream, Progress
from stepgap.analyze.trace import TraceData

EPOCH_NS = 10**17  # absolute timestamps are Unix-epoch µs (~1.7e15); relative ones far less


def read_chrome(path: Path, rank: int, progress: Progress | None = None) -> TraceData:
    """Read one Chrome / Kineto trace file into a `TraceData` (rank from the trace's
    `distributedInfo` when present, else `rank`)."""
    stream = EventStream(Path(path), CLASSIFY, progress, parse_float=Decimal)
    columns = ChromeColumns(str(path))
    for batch in stream:
        columns.add_pieces(batch.pieces)
        columns.add(batch.events)
    header = stream.header
    first_ns = columns.first_ns()
    ranges, calls, ops = columns.tables(first_ns or 0)
    return TraceData(
        path=str(path),
        format="chrome",
        rank=_rank(header, rank),
        ranges=ranges,
        calls=calls,
        ops=ops,
        origin_ns=_origin_ns(header, first_ns or 0),
        device_name=_device_name(header, set(ops.device.unique().tolist())),
        meta={
            "malformed_events": columns.malformed,
            "exact_fallbacks": stream.exact_fallbacks,
            "decoded_groups": columns.decoded_groups,
        },
    )


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


def _origin_ns(header: dict, first_ns: int) -> int | None:
    """The absolute time of the file's first event, when the trace says what its clock is."""
    base = header.get("baseTimeNanoseconds")
    if isinstance(base, int) and not isinstance(base, bool):
        return base + first_ns
    if isinstance(base, float) and base.is_integer():
        return int(base) + first_ns
    return first_ns if first_ns > EPOCH_NS else None
