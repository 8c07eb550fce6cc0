"""What every command shares: one-line plain-text errors, JSON output, console tables."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reference_engine.config import ConfigError
from stepgap.errors import OutputPathError, RunError

# Logs and CI capture output without a terminal; rich would squeeze tables into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input found by a command itself."""


def one_line(text: str) -> str:
    """The first line of `text`, for messages that must stay one line."""
    return text.splitlines()[0] if text.strip() else ""


def plain(text: str) -> Text:
    """`text` as it is: brackets in paths and names are not rich markup."""
    return Text(text)


def labelled(label: str, style: str, text: str) -> Text:
    """`label: text` with only the label styled."""
    return Text.assemble((f"{label}:", style), " ", text)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print `error: message` (one line, never read as markup) and exit with `code`."""
    err_console.print(labelled("error", "bold red", one_line(message)), soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str, label: str = "warning") -> None:
    err_console.print(labelled(label, "yellow", one_line(message)), soft_wrap=True)


EXPECTED_ERRORS = (ConfigError, RunError, OutputPathError, UsageError, FileExistsError)


def handle_errors(command: Callable) -> Callable:
    """Turn the library's expected errors into a one-line message and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EXPECTED_ERRORS as error:
            fail(str(error) or type(error).__name__)
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
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A plain table: titles, headers and cells are text, never markup."""
    out = Table(title=plain(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(columns):
        # The first column names the row: never wrap it, squeeze the numbers instead.
        out.add_column(plain(column), justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        out.add_row(*(v if isinstance(v, Text) else plain(fmt(v)) for v in row))
    return out
