"""The `stepgap` command line: one module per command, each a thin shell over the library.

Commands load lazily: `stepgap --help` lists them from their modules' source (no import),
and `stepgap analyze ...` imports only `stepgap.cli.analyze` and what it needs — the
commands that never run the engine never import torch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from functools import cache
from typing import Annotated, Any

INTERRUPTED = "interrupted"  # what Ctrl-C prints, anywhere, before exit status 130


def _interrupted() -> None:
    sys.stderr.write(f"{INTERRUPTED}\n")


try:  # Ctrl-C while the CLI itself loads: one line, no traceback
    import click
    import typer
    from typer.core import TyperGroup
except KeyboardInterrupt:
    _interrupted()
    raise SystemExit(130) from None

COMMANDS = (
    "run",
    "compare",
    "workloads",
    "report",
    "export",
    "analyze",
    "gate",
    "verify",
    "serve",
    "bench",
    "predict",
)
APP_SETTINGS: dict[str, Any] = {"add_completion": False, "pretty_exceptions_enable": False}


class LazyCommands(TyperGroup):
    """Looks each command up in its module (`stepgap.cli.<name>`, function `<name>`) only
    when it runs or its own help is asked for; the command list reads docstrings only."""

    listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self.listing:
            return click.Command(cmd_name, help=_summary(cmd_name))
        return _load(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False

    def invoke(self, ctx: Any) -> Any:
        """Run the command; Ctrl-C anywhere in it (loading torch, building the engine,
        measuring, saving) ends with one line and exit status 130."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted()
            raise typer.Exit(130) from None


@cache
def _load(name: str) -> Any:
    function = getattr(importlib.import_module(f"stepgap.cli.{name}"), name)
    single = typer.Typer(**APP_SETTINGS)
    single.command()(function)
    return typer.main.get_command(single)


@cache
def _summary(name: str) -> str:
    """The first paragraph of the command function's docstring, read from its source."""
    spec = importlib.util.find_spec(f"stepgap.cli.{name}")
    if spec is None or spec.origin is None:
        return ""
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


def _print_version(asked: bool) -> None:
    if asked:
        from importlib import metadata

        try:
            version = metadata.version("stepgap")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        typer.echo(f"stepgap {version}")
        raise typer.Exit()


@app.callback()
def _stepgap(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Measure GPU idle gaps between LLM decode steps; prove overlap keeps tokens identical."""


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (parsing options, printing help)
        _interrupted()
        _exit_interrupted()
    except SystemExit as done:
        if done.code == 130:
            _exit_interrupted()
        raise


def _exit_interrupted() -> None:
    """Leave at once with status 130: everything is written (atomically) by now, and the
    interpreter's shutdown — engine threads half built when Ctrl-C came — is skipped, so
    the status is 130, not a death by SIGINT."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
