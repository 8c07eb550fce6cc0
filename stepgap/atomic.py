"""The one way stepgap writes results: build under a temporary name beside the target, then
rename into place, so a reader sees the old result or the new one, never half of one.

Files are created 0644 and directories 0755 (mkstemp and mkdtemp make them private), so
runs, reports, verdicts and gate reports are all readable by the team that shares them.
Replacing a directory is two renames, made with Ctrl-C held back in between.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from stepgap.interrupts import deferred_interrupts
from stepgap.output_paths import free_name

FILE_MODE = 0o644
DIRECTORY_MODE = 0o755


def write_file(path: Path, content: bytes | str) -> Path:
    """Write `content` (text as UTF-8) to `path` through a temporary file in its directory."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_directory(path: Path, fill: Callable[[Path], None], replace: bool = False) -> Path:
    """Build a directory with `fill(tmp_dir)` beside `path`, then move it to `path`.

    An existing `path` is swapped out only when `replace` is set, and only now that the new
    directory is complete; otherwise (say another run took the name meanwhile) the result
    goes to a free sibling name `path-2`, ..., which is returned: a result is never lost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, DIRECTORY_MODE)
        fill(tmp)
        with deferred_interrupts():
            return _move_into_place(tmp, path, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, path: Path, replace: bool) -> Path:
    if replace and path.is_dir() and not path.is_symlink():
        old = free_name(path.with_name(f".{path.name}"), ".old")
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return path
    target = path
    while True:
        try:
            os.mkdir(target)  # claims the name; rename then replaces the empty directory
        except FileExistsError:
            target = free_name(path)
            continue
        os.rename(tmp, target)
        return target
