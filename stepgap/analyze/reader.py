"""Which reader a file needs, told by its first bytes rather than its name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from stepgap.analyze.chrome import read_chrome
from stepgap.analyze.nsys import read_nsys
from stepgap.analyze.trace import TraceData, TraceError

SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
FORMATS = ("chrome", "nsys")

FileProgress = Callable[[str, int, int], None]  # (path, done, total) in bytes


def detect_format(path: Path) -> str:
    """ "chrome" (JSON, maybe gzipped) or "nsys" (SQLite export); TraceError otherwise."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except IsADirectoryError:
        raise TraceError(f"{path} is a directory, not a trace file") from None
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror or error}") from None
    if head.startswith(SQLITE_MAGIC):
        return "nsys"
    if head.startswith(GZIP_MAGIC) or head.lstrip()[:1] in (b"{", b"["):
        return "chrome"
    if path.suffix in (".nsys-rep", ".qdrep"):
        raise TraceError(
            f"{path} is an Nsight Systems report; export it first: "
            f"nsys export --type sqlite {path.name}"
        )
    if not head:
        raise TraceError(f"{path} is empty")
    raise TraceError(
        f"{path} is neither a Chrome trace (JSON, .json.gz) nor an Nsight Systems SQLite export"
    )


TRACE_SUFFIXES = (".json", ".json.gz", ".sqlite")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Trace files, a directory standing for the trace files in it (one per rank, by name)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith(TRACE_SUFFIXES))
            if not found:
                raise TraceError(f"{path} holds no trace file (*.json, *.json.gz, *.sqlite)")
            files += found
        else:
            files.append(path)
    return files


def read_trace(path: Path, rank: int, progress: FileProgress | None = None) -> TraceData:
    """Read one trace file (one rank) in whichever supported format it is."""
    path = Path(path)
    if not path.exists():
        raise TraceError(f"trace file {path} does not exist")
    reader = read_nsys if detect_format(path) == "nsys" else read_chrome
    report = (lambda done, total: progress(str(path), done, total)) if progress else None
    return reader(path, rank, report)
