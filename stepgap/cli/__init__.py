"""The `stepgap` command line: one module per command, each a thin shell over the library.

Commands load lazily: `stepgap --help` lists them from their modules' source (no import),
and `stepgap analyze ...` imports only `stepgap.cli.analyze` and what it needs — the
commands that never run the engine never import torch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from functools import cache

import click
import typer
from typer.core import TyperGroup

COMMANDS = ("run", "compare", "workloads", "report", "export", "analyze", "gate", "verify")
APP_SETTINGS = {"add_completion": False, "pretty_exceptions_enable": False}


class LazyCommands(TyperGroup):
    """Looks each command up in its module (`stepgap.cli.<name>`, function `<name>`) only
    when it runs or its own help is asked for; the command list reads docstrings only."""

    listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self.listing:
            return click.Command(cmd_name, help=_summary(cmd_name))
        return _load(cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


@cache
def _load(name: str) -> click.Command:
    function = getattr(importlib.import_module(f"stepgap.cli.{name}"), name)
    single = typer.Typer(**APP_SETTINGS)
    single.command()(function)
    return typer.main.get_command(single)


@cache
def _summary(name: str) -> str:
    """The first paragraph of the command function's docstring, read from its source."""
    spec = importlib.util.find_spec(f"stepgap.cli.{name}")
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())  # noqa: SIM115
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            paragraph = (ast.get_docstring(node) or "").split("\n\n")[0]
            return " ".join(paragraph.split())
    return ""


app = typer.Typer(
    name="stepgap",
    help="Measure GPU idle gaps between LLM decode steps; prove overlap keeps tokens identical.",
    no_args_is_help=True,
    cls=LazyCommands,
    **APP_SETTINGS,
)


@app.callback()
def _stepgap() -> None:
    """Measure GPU idle gaps between LLM decode steps; prove overlap keeps tokens identical."""


def main() -> None:
    app()
