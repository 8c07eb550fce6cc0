"""The `stepgap` command line: one module per command, each a thin shell over the library."""

from __future__ import annotations

import typer

from stepgap.cli.compare import compare
from stepgap.cli.run import run
from stepgap.cli.workloads import workloads

app = typer.Typer(
    name="stepgap",
    help="Measure GPU idle gaps between LLM decode steps; prove overlap keeps tokens identical.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(run)
app.command()(compare)
app.command()(workloads)


def main() -> None:
    app()
