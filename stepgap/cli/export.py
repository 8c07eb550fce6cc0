"""`stepgap export`: a run's step timeline in another tool's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepgap.cli.common import console, handle_errors, labelled, print_json


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
    force: Annotated[bool, typer.Option(help="Replace an existing --perfetto file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON.")
    ] = False,
) -> None:
    """Export RUN's device steps, idle gaps and host phases as a Chrome/Perfetto trace."""
    from stepgap.output_paths import check_file_target
    from stepgap.perfetto import export_perfetto
    from stepgap.runs import RunError, load_runs

    check_file_target(perfetto, force, "--perfetto")
    runs = load_runs(run)
    if len(runs) > 1:
        members = ", ".join(str(r.path) for r in runs)
        raise RunError(f"{run} is a group of {len(runs)} runs; export one of: {members}")
    path, events = export_perfetto(runs[0], perfetto)
    size = path.stat().st_size
    if json_output:
        print_json({"perfetto": str(path), "run": str(run), "events": events, "bytes": size})
        return
    console.print(labelled("perfetto trace", "", f"{path} ({size / 1e3:,.0f} kB, {events} events)"))
