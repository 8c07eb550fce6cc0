"""Writing derived files (reports, plots, exported traces) without harming results."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from stepgap.runs import RUN_FILE, RunError


def check_output_path(path: Path) -> None:
    """Refuse a destination that is a directory or lies inside a run directory, where a
    derived file could replace (or be mistaken for) a measured result."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{path} is a directory; give a file name")
    if (path.parent / RUN_FILE).is_file():
        raise RunError(f"{path.parent} is a run directory; write derived files elsewhere")


def write_atomically(path: Path, content: bytes) -> Path:
    """Write `content` to a temporary file beside `path`, then rename it into place: a
    reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
