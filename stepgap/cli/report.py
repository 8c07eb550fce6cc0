"""`stepgap report`: one self-contained HTML page of one or more runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepgap.cli.common import console, fail, handle_errors, labelled, print_json, warn
from stepgap.identity import NEAR_TIE_LOGIT_MARGIN
from stepgap.output_paths import check_file_target
from stepgap.report import build_report
from stepgap.report.builder import ReportInfo
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
            fail(str(error))  # exits 2
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
        Path, typer.Option("--out", "-o", help="HTML file to write (atomically).")
    ] = Path("report.html"),
    force: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
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
    json_output: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON.")
    ] = False,
) -> None:
    """Write a self-contained HTML report of RUNS: device timeline, gap distribution and
    attribution, latencies, throughput, metrics with ratios, token identity, environments,
    and with --verify the verdicts of `stepgap verify`. Runs of `stepgap analyze` add the
    three idle figures, each rank and stream on its own, and why the gaps happened."""
    check_file_target(out, force, "--out")
    if plots_dir is not None:  # figures in it are replaced: they are derived files
        check_file_target(Path(plots_dir) / "figure.svg", True, "--plots-dir")
    loaded = _load(runs)
    verdicts = _load_verdicts(verify or [])
    info = build_report(loaded, out, plots_dir, near_tie, verdicts)
    if json_output:
        print_json(_summary(info, loaded, verdicts, plots_dir))
        return
    for warning in info.warnings:
        warn(warning)
    for skipped in info.skipped:
        warn(skipped, "note")
    line = (
        f"{info.path} ({len(loaded)} runs, {len(info.figures)} figures, "
        f"{_verdict_count(verdicts)}{info.size_bytes / 1e3:,.0f} kB)"
    )
    console.print(labelled("report", "", line), soft_wrap=True)
    if info.plot_files:
        console.print(labelled("plots", "", f"{len(info.plot_files)} files in {plots_dir}"))


def _summary(
    info: ReportInfo, runs: list[RunData], verdicts: list[VerdictView], plots_dir: Path | None
) -> dict:
    return {
        "report": str(info.path),
        "runs": [str(run.path) for run in runs],
        "figures": len(info.figures),
        "bytes": info.size_bytes,
        "verdicts": len(verdicts),
        "plots": [str(path) for path in info.plot_files],
        "plots_dir": str(plots_dir) if plots_dir else None,
        "warnings": list(info.warnings),
        "notes": list(info.skipped),
    }


def _verdict_count(verdicts: list[VerdictView]) -> str:
    if not verdicts:
        return ""
    failed = sum(not view.passed for view in verdicts)
    return f"{len(verdicts)} verify verdict(s), {failed} failed, "
