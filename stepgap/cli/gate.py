"""`stepgap gate`: check a run against a rules file; exit 1 when a check fails (for CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from stepgap.atomic import write_file
from stepgap.cli.common import console, fail, handle_errors, labelled, plain, print_json
from stepgap.gate.evaluate import GateReport, run_gate
from stepgap.gate.inputs import GateInputError, parse_attachments
from stepgap.gate.output import NOISE_NOTE, junit_xml, markdown, terminal_table, verdict_line
from stepgap.gate.rules import RulesError

EXIT_CHECK_FAILED = 1


REPORT_MARKS = {"--junit-xml": '<testsuites name="stepgap gate"', "--markdown": "### stepgap gate"}


def _check_report_file(path: Path | None, option: str, force: bool) -> None:
    """Before the gate runs: the report file can be written, and a file already there is a
    previous gate report (CI rewrites it on every run) or --force allows replacing it."""
    if path is None:
        return
    from stepgap.output_paths import check_file_target

    check_file_target(path, True, option)
    if path.is_file() and not force and not _is_gate_report(path, REPORT_MARKS[option]):
        fail(f"{option} {path} exists and is not a stepgap gate report; pass --force to replace it")


def _is_gate_report(path: Path, mark: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return mark in handle.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


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
    force: Annotated[
        bool, typer.Option(help="Replace --junit-xml/--markdown files that are not gate reports.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Check RUN against the rules: bounds, overlap/sync ratios, regressions against a
    baseline beyond run-to-run noise, token identity, a `stepgap verify` verdict. Exit 0
    when every check passes, 1 when one fails, 2 on bad input (missing run, malformed
    rules, unknown metric, unreadable verdict)."""
    _check_report_file(junit_xml_file, "--junit-xml", force)
    _check_report_file(markdown_file, "--markdown", force)
    try:
        report = run_gate(run, rules, baseline, _attachments(attach or [], verify))
    except (RulesError, GateInputError) as error:
        fail(str(error))
    if junit_xml_file is not None:
        write_file(junit_xml_file, junit_xml(report))
    if markdown_file is not None:
        write_file(markdown_file, markdown(report))
    if json_output:
        print_json(report.to_dict())
    else:
        _print(report)
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print(report: GateReport) -> None:
    console.print(terminal_table(report))
    for check in report.failures:
        console.print(Text.assemble(("FAIL", "bold red"), f" {check.title}: {check.detail}"))
    for check in report.noise_passes:
        console.print(labelled("note", "yellow", f"{check.title} {NOISE_NOTE}"), soft_wrap=True)
    colour = "green" if report.passed else "bold red"
    console.print(plain(verdict_line(report)), style=colour)
