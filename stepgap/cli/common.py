"""What every command shares: one-line errors, JSON output, console tables."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from reference_engine import ConfigError
from stepgap.runs import RunError

# Logs and CI capture output without a terminal; rich would squeeze tables into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input found by a command itself."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(command: Callable) -> Callable:
    """Turn the library's expected errors into a one-line message and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ConfigError, RunError, UsageError, FileExistsError) as error:
            fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
        except OSError as error:
            fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))

    return wrapper


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(data), indent=2) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    out = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(columns):
        # The first column names the row: never wrap it, squeeze the numbers instead.
        out.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        out.add_row(*(fmt(v) for v in row))
    return out
