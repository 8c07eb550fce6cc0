"""Output paths checked before any work: where a run directory or a file may be written.

Every command that writes calls one of these first, so a bad path fails in a second, not
after hours of measurement: the path names something (not `.` or `/`), no parent is a
file, its directory can be written, and what is already there may be replaced — only with
`--force`, and for run directories only when it is a stepgap run (never a directory of
notes, never the working directory or one above it).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from pathlib import Path

from stepgap.errors import OutputPathError

RUN_FILES = frozenset(
    {"run.json", "steps.csv", "requests.csv", "phases.csv", "tokens.jsonl", "trace.json.gz"}
)
RUN_FILE = "run.json"
_RANK_TABLE = re.compile(r"^(steps|phases)-rank[1-9][0-9]*\.csv$")  # TP: ranks 1.. tables


def rank_table_file(table: str, rank: int) -> str:
    """The file of rank `rank`'s `table` ("steps" or "phases") in a tensor-parallel run."""
    return f"{table}-rank{rank}.csv"


def is_run_file(name: str) -> bool:
    """A file name a run directory holds (rank tables of a tensor-parallel run too)."""
    return name in RUN_FILES or _RANK_TABLE.match(name) is not None


def check_run_target(path: Path, force: bool) -> Path:
    """Fail unless a run (or group) directory can be written at `path`."""
    path = Path(path)
    _check_names_something(path)
    _check_parents(path)
    if path.exists() or path.is_symlink():
        _check_replaceable_run(path, force)
    _check_writable(path)
    return path


def check_file_target(path: Path, force: bool, option: str) -> Path:
    """Fail unless the file `path` (given as `option`) can be written; an existing file is
    replaced only with --force, and never inside a run directory."""
    path = Path(path)
    _check_names_something(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a directory; give a file name")
    _check_parents(path)
    if (path.parent / RUN_FILE).is_file():
        raise OutputPathError(
            f"{option} {path}: {path.parent} is a run directory; write derived files elsewhere"
        )
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise OutputPathError(f"{option} {path} exists and is not a regular file")
        if not force:
            raise OutputPathError(f"{option} {path} exists; pass --force to replace it")
    _check_writable(path)
    return path


def default_run_dir(stem: str, root: Path = Path("runs")) -> Path:
    """`runs/<stem>-<time>`, made unique: a second run in the same second gets `-2`."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return free_name(root / f"{stem}-{stamp}")


def free_name(path: Path, suffix: str = "") -> Path:
    """`path` + `suffix` if nothing is there yet, else the first free `...-2`, `...-3`."""
    candidate = path.with_name(path.name + suffix)
    number = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}{suffix}-{number}")
        number += 1
    return candidate


def is_run_directory(path: Path) -> bool:
    """A directory stepgap wrote: a run (only run files in it) or a group of runs."""
    if not path.is_dir() or path.is_symlink():
        return False
    entries = list(path.iterdir())
    if (path / RUN_FILE).is_file():
        return all(is_run_file(entry.name) for entry in entries)
    return bool(entries) and all(_is_run(entry) for entry in entries)


def _is_run(path: Path) -> bool:
    if not path.is_dir() or path.is_symlink() or not (path / RUN_FILE).is_file():
        return False
    return all(is_run_file(entry.name) for entry in path.iterdir())


def _check_names_something(path: Path) -> None:
    resolved = path.resolve()
    if path.name in ("", ".", "..") or resolved == Path(resolved.anchor):
        raise OutputPathError(f"{str(path)!r} names no file or directory of its own")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise OutputPathError(f"{path} is the working directory or holds it")


def _check_parents(path: Path) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"cannot write {path}: {parent} is not a directory")
            return


def _check_replaceable_run(path: Path, force: bool) -> None:
    if not path.is_dir() or path.is_symlink():
        raise OutputPathError(f"{path} exists and is not a directory")
    if not force:
        raise OutputPathError(f"{path} already exists; pass --force to replace it")
    if not is_run_directory(path):
        raise OutputPathError(
            f"{path} is not a stepgap run directory; --force replaces only runs, so it stays"
        )


def nearest_existing(path: Path) -> Path:
    """`path`'s parent if it exists, else the closest ancestor that does."""
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _check_writable(path: Path) -> None:
    """Create and remove a scratch entry where `path` will go (root ignores mode bits, so
    asking os.access would not do)."""
    directory = nearest_existing(path)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".stepgap-check-", dir=directory))
    except OSError as error:
        raise OutputPathError(
            f"cannot write {path}: {directory} is not writable ({error.strerror})"
        ) from None
