"""Where derived files (reports, plots, exported traces) may go without harming results;
`stepgap.atomic.write_file` writes them."""

from __future__ import annotations

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
