"""`stepgap gate`: check a run against a rules file; exit 1 when a check fails (for CI)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stepgap.cli.common import console, fail, handle_errors, print_json
from stepgap.gate.evaluate import run_gate
from stepgap.gate.inputs import GateInputError, parse_attachments
from stepgap.gate.output import NOISE_NOTE, junit_xml, markdown, terminal_table, verdict_line
from stepgap.gate.rules import RulesError

EXIT_CHECK_FAILED = 1


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file, so a half-written report never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _attachments(items: list[str], verify: Path | None) -> dict[str, Path]:
    """--attach NAME=FILE items, plus --verify FILE as the `verify` attachment."""
    attached = parse_attachments(items)
    if verify is not None:
        if "verify" in attached:
            raise GateInputError("--verify and --attach verify=FILE name the same file: pass one")
        attached["verify"] = verify
    return attached


@handle_errors
def gate(
    run: Annotated[Path, typer.Argument(help="Run directory, or a `--mode both` group directory.")],
    rules: Annotated[Path, typer.Option(help="Rules file (TOML); see README, 'stepgap gate'.")],
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline run (or group) for `... baseline + N%` rules.")
    ] = None,
    junit_xml_file: Annotated[
        Path | None, typer.Option("--junit-xml", help="Also write JUnit XML, one case per check.")
    ] = None,
    markdown_file: Annotated[
        Path | None,
        typer.Option("--markdown", help="Also write a Markdown table (for $GITHUB_STEP_SUMMARY)."),
    ] = None,
    attach: Annotated[
        list[str] | None,
        typer.Option(help="NAME=FILE input for a fact, e.g. verify=verdict.json; repeatable."),
    ] = None,
    verify: Annotated[
        Path | None,
        typer.Option(
            help="Verdict of `stepgap verify --out FILE`, for `verify.passed == true` rules "
            "(the same as --attach verify=FILE)."
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Check RUN against the rules: bounds, overlap/sync ratios, regressions against a
    baseline beyond run-to-run noise, token identity, a `stepgap verify` verdict. Exit 0
    when every check passes, 1 when one fails, 2 on bad input (missing run, malformed
    rules, unknown metric, unreadable verdict)."""
    try:
        report = run_gate(run, rules, baseline, _attachments(attach or [], verify))
    except (RulesError, GateInputError) as error:
        fail(escape(str(error)))  # messages quote `[noise]`, `[[rule]]`: text, not markup
    if junit_xml_file is not None:
        _write_atomically(junit_xml_file, junit_xml(report))
    if markdown_file is not None:
        _write_atomically(markdown_file, markdown(report))
    if json_output:
        print_json(report.to_dict())
    else:
        console.print(terminal_table(report))
        for check in report.failures:
            line = escape(f"{check.title}: {check.detail}")
            console.print(f"[bold red]FAIL[/] {line}", soft_wrap=True)
        for check in report.noise_passes:
            console.print(f"[yellow]note:[/] {escape(check.title)} {NOISE_NOTE}", soft_wrap=True)
        colour = "green" if report.passed else "bold red"
        console.print(f"[{colour}]{verdict_line(report)}[/]")
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)
