"""`stepgap export`: a run's step timeline in another tool's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepgap.cli.common import console, handle_errors
from stepgap.perfetto import export_perfetto
from stepgap.runs import RunError, load_runs


@handle_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory to export.")],
    perfetto: Annotated[
        Path,
        typer.Option(
            help="Chrome/Perfetto trace JSON to write (.json, or .json.gz to compress); open "
            "it in ui.perfetto.dev."
        ),
    ],
) -> None:
    """Export RUN's device steps, idle gaps and host phases as a Chrome/Perfetto trace."""
    runs = load_runs(run)
    if len(runs) > 1:
        members = ", ".join(str(r.path) for r in runs)
        raise RunError(f"{run} is a group of {len(runs)} runs; export one of: {members}")
    path = export_perfetto(runs[0], perfetto)
    size_kb = path.stat().st_size / 1e3
    console.print(f"perfetto trace: {path} ({size_kb:,.0f} kB)", markup=False, highlight=False)
