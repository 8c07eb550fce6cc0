"""A gate report as a terminal table, JUnit XML, a GitHub-flavoured Markdown table, or JSON.

JUnit: one <testsuite> in <testsuites>, one <testcase> per check (a rule on a plain metric
gives one per mode), a <failure> with the one-line verdict for each failed check. It follows
the Jenkins/Ant JUnit format that Jenkins, GitLab and GitHub test reporters read.
"""

from __future__ import annotations

import datetime as dt
import math
import socket
import xml.etree.ElementTree as ET
from typing import Any

from rich.markup import escape
from rich.table import Table

from stepgap.gate.evaluate import CheckResult, GateReport

NOISE_NOTE = "passed only because the change lies within run-to-run noise"
COLUMNS = ["status", "check", "value", "limit", "baseline", "change", "noise interval"]


def format_value(value: Any) -> str:
    """Numbers to 4 significant digits, booleans as true/false, missing as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _limit(check: CheckResult) -> str:
    return f"{check.rule.op} {format_value(check.limit)}"


def _change(check: CheckResult) -> str:
    if check.change_pct is None or math.isnan(check.change_pct):
        return "—"
    return f"{check.change_pct:+.1f}%"


def _noise(check: CheckResult) -> str:
    return check.noise.describe() if check.noise else "—"


def rows(report: GateReport) -> list[list[str]]:
    """One row of display strings per check, in COLUMNS order."""
    return [
        [
            check.status,
            check.title,
            format_value(check.value),
            _limit(check),
            format_value(check.baseline_value),
            _change(check),
            _noise(check),
        ]
        for check in report.checks
    ]


def verdict_line(report: GateReport) -> str:
    """`gate PASSED: 5 checks` / `gate FAILED: 2 of 5 checks failed`, with noise passes."""
    total, failed = len(report.checks), len(report.failures)
    line = (
        f"gate PASSED: {total} checks"
        if report.passed
        else f"gate FAILED: {failed} of {total} checks failed"
    )
    if report.noise_passes:
        line += f" ({len(report.noise_passes)} {NOISE_NOTE})"
    return line


def terminal_table(report: GateReport) -> Table:
    """A rich table of every check, coloured by status; without a baseline, its columns go."""
    title = f"gate: {report.run}" + (f" vs baseline {report.baseline}" if report.baseline else "")
    table = Table(title=escape(title), title_justify="left")
    shown = len(COLUMNS) if report.baseline else COLUMNS.index("baseline")
    for i, column in enumerate(COLUMNS[:shown]):
        table.add_column(column, justify="right" if i >= 2 else "left", overflow="fold")
    colours = {"PASS": "green", "PASS (noise)": "yellow", "FAIL": "bold red"}
    for check, row in zip(report.checks, rows(report), strict=True):
        cells = [escape(cell) for cell in row[:shown]]  # titles hold "[sync]": text, not markup
        cells[0] = f"[{colours[check.status]}]{cells[0]}[/]"
        table.add_row(*cells)
    return table


def junit_xml(report: GateReport) -> str:
    """The report as JUnit XML (Jenkins/Ant schema): one testcase per check."""
    total, failed = len(report.checks), len(report.failures)
    counts = {"tests": str(total), "failures": str(failed), "errors": "0", "time": "0"}
    suites = ET.Element("testsuites", {"name": "stepgap gate", **counts})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": f"stepgap gate {report.run}",
            **counts,
            "skipped": "0",
            "timestamp": dt.datetime.now().replace(microsecond=0).isoformat(),
            "hostname": socket.gethostname() or "localhost",
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run", report.run),
        ("baseline", report.baseline or ""),
        ("rules", report.rules_file),
        ("noise_confidence", str(report.noise.confidence)),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for check in report.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"stepgap.gate.{check.rule.kind}", "name": check.title, "time": "0"},
        )
        if not check.passed:
            failure = ET.SubElement(
                case, "failure", {"message": check.detail, "type": "GateCheckFailed"}
            )
            failure.text = _case_text(check)
        else:
            ET.SubElement(case, "system-out").text = _case_text(check)
    ET.SubElement(suite, "system-out").text = verdict_line(report)
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _case_text(check: CheckResult) -> str:
    where = f" (line {check.rule.line})" if check.rule.line else ""
    lines = [f"rule{where}: {check.rule.check}", check.detail]
    if check.rule.description:
        lines.append(check.rule.description)
    if check.within_noise:
        lines.append(NOISE_NOTE)
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A GFM table cell: pipes escaped, no line breaks."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(report: GateReport) -> str:
    """A heading, a GFM table (one row per check) and notes, for $GITHUB_STEP_SUMMARY."""
    icon = {"PASS": "✅ pass", "PASS (noise)": "⚠️ pass (noise)", "FAIL": "❌ fail"}
    header = [*COLUMNS, "detail"]
    lines = [
        f"### stepgap gate: {'passed' if report.passed else 'FAILED'}",
        "",
        f"Run `{report.run}`"
        + (f" against baseline `{report.baseline}`" if report.baseline else "")
        + f", rules `{report.rules_file}`.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---", "---", *["---:"] * 5, "---"]) + " |",
    ]
    for check, row in zip(report.checks, rows(report), strict=True):
        cells = [icon[check.status], f"`{row[1]}`", *row[2:], check.detail]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", verdict_line(report) + "."]
    if report.noise_passes:
        names = ", ".join(f"`{c.title}`" for c in report.noise_passes)
        lines.append(f"Passed only because of noise: {names}.")
    return "\n".join(lines) + "\n"


def report_json(report: GateReport) -> dict[str, Any]:
    """The report as a JSON-ready dict (see GateReport.to_dict)."""
    return report.to_dict()
