"""The report's Verification section: `stepgap verify` verdicts as HTML."""

from __future__ import annotations

from collections.abc import Sequence

from stepgap.report import html
from stepgap.report.verification import FirstFailure, VerdictView


def verification_section(verdicts: Sequence[VerdictView]) -> str:
    """The Verification section: per verdict, the overall verdict, what was verified, the
    per-check table, the first failure and (--all-faults) the planted-fault table."""
    parts = []
    for view in verdicts:
        if len(verdicts) > 1:
            parts.append(f"<h3>{html.escape(view.label)}</h3>")
        parts.append(_verdict_body(view))
    explain = (
        "From stepgap verify: sync and overlap run over seeds × workloads × model families, "
        "under seeded schedule jitter, each check applied per request. Planted faults are a "
        "test option of the reference engine, off by default: each reproduces a known "
        "overlap-schedule bug, and a verifier worth trusting catches every one."
    )
    return html.section("Verification", "".join(parts) + html.note(explain), "verification")


def _verdict_body(view: VerdictView) -> str:
    state, word = (
        ("ok", "✓ stepgap verify passed") if view.passed else ("bad", "✗ stepgap verify FAILED")
    )
    parts = [
        html.verdict(f"{word}: {view.summary}" if view.summary else word, state),
        html.table(
            ["field", "value"],
            [["verdict file", view.label], *map(list, view.settings)],
            css_class="env",
        ),
        "<h4>Checks</h4>",
        _checks_table(view),
    ]
    if view.first_failure is not None:
        parts += ["<h4>First failure</h4>", _first_failure_table(view.first_failure)]
    if view.faults is not None:
        parts += ["<h4>Planted faults</h4>", _faults_table(view)]
    return "".join(parts)


def _checks_table(view: VerdictView) -> str:
    columns = ["check", "description", "runs", "failed", "first failure", "diagnosis"]
    rows, classes = [], []
    for check in view.checks:
        rows.append(
            [
                check.name,
                check.description,
                f"{check.runs:,}",
                f"{check.runs_failed:,}",
                check.first or "—",
                check.diagnosis or "—",
            ]
        )
        failed = "worse" if check.runs_failed else ""
        classes.append(["", "text", "", failed, "text", "text"])
    return html.table(columns, rows, classes, css_class="verify")


def _first_failure_table(first: FirstFailure) -> str:
    rows = [
        ["check", first.check],
        ["where", first.where],
        ["case", first.case or "—"],
        *map(list, first.values),
        ["diagnosis", first.diagnosis or "—"],
    ]
    return html.table(["field", "value"], rows, css_class="env")


def _faults_table(view: VerdictView) -> str:
    levels = [f"caught, jitter {level}" for level in view.levels]
    columns = ["fault", "race", "what it changes", *levels, "caught", "first check"]
    rows, classes = [], []
    for fault in view.faults or ():
        rows.append(
            [
                fault.fault,
                "yes" if fault.race else "no",
                fault.change,
                *fault.caught_by_level,
                "yes" if fault.caught else "NO",
                fault.first_checks or "—",
            ]
        )
        caught = "better" if fault.caught else "worse"
        classes.append(["", "", "text", *[""] * len(levels), caught, "text"])
    return html.table(columns, rows, classes, css_class="verify")
