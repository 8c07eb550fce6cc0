"""The `stepgap` command line: one module per command, each a thin shell over the library."""

from __future__ import annotations

import typer

from stepgap.cli.analyze import analyze
from stepgap.cli.compare import compare
from stepgap.cli.export import export
from stepgap.cli.gate import gate
from stepgap.cli.report import report
from stepgap.cli.run import run
from stepgap.cli.verify import verify
from stepgap.cli.workloads import workloads

app = typer.Typer(
    name="stepgap",
    help="Measure GPU idle gaps between LLM decode steps; prove overlap keeps tokens identical.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (run, compare, workloads, report, export, analyze, gate, verify):
    app.command()(command)


def main() -> None:
    app()
