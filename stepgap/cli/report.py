"""`stepgap report`: one self-contained HTML page of one or more runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stepgap.cli.common import console, err_console, fail, handle_errors
from stepgap.identity import NEAR_TIE_LOGIT_MARGIN
from stepgap.report import build_report
from stepgap.report.tables import ordered_by_mode
from stepgap.report.verification import VerdictView, read_verdict_view
from stepgap.runs import RunData, load_runs
from stepgap.verify.verdict import VerdictError


def _load(paths: list[Path]) -> list[RunData]:
    """Each path's runs in order; a group directory's sorted sync first, then overlap."""
    return [run for path in paths for run in ordered_by_mode(load_runs(path))]


def _load_verdicts(paths: list[Path]) -> list[VerdictView]:
    """Every verdict file, read before anything is drawn: a bad one stops the report."""
    views = []
    for path in paths:
        try:
            views.append(read_verdict_view(path))
        except VerdictError as error:
            fail(escape(str(error)))  # exits 2
    return views


@handle_errors
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories, or group directories of runs (`stepgap run --mode both`). "
            "The first run (in a group: sync) is the baseline of ratios and token comparisons."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="HTML file to write (replaced atomically).")
    ] = Path("report.html"),
    plots_dir: Annotated[
        Path | None, typer.Option(help="Also write each figure as PNG and SVG here.")
    ] = None,
    near_tie: Annotated[
        float, typer.Option(help="Top-2 logit margin under which a divergence is a near-tie.")
    ] = NEAR_TIE_LOGIT_MARGIN,
    verify: Annotated[
        list[Path] | None,
        typer.Option(
            help="Verdict of `stepgap verify --out FILE`: adds a Verification section "
            "(checks, first failure, planted faults). Repeatable."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report of RUNS: device timeline, gap distribution and
    attribution, latencies, throughput, metrics with ratios, token identity, environments,
    and with --verify the verdicts of `stepgap verify`."""
    loaded = _load(runs)
    verdicts = _load_verdicts(verify or [])
    info = build_report(loaded, out, plots_dir, near_tie, verdicts)
    for warning in info.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for skipped in info.skipped:
        err_console.print(f"[yellow]note:[/] {escape(skipped)}", highlight=False, soft_wrap=True)
    console.print(
        f"report: {escape(str(info.path))} ({len(loaded)} runs, {len(info.figures)} figures, "
        f"{_verdict_count(verdicts)}{info.size_bytes / 1e3:,.0f} kB)",
        highlight=False,
        soft_wrap=True,
    )
    if info.plot_files:
        console.print(
            f"plots: {len(info.plot_files)} files in {escape(str(plots_dir))}",
            highlight=False,
            soft_wrap=True,
        )


def _verdict_count(verdicts: list[VerdictView]) -> str:
    if not verdicts:
        return ""
    failed = sum(not view.passed for view in verdicts)
    return f"{len(verdicts)} verify verdict(s), {failed} failed, "
