"""`build_report`: runs in, one self-contained HTML page (and optionally PNG + SVG files
per figure) out."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from stepgap.atomic import write_file
from stepgap.identity import NEAR_TIE_LOGIT_MARGIN
from stepgap.ratio_noise import NOISE_NOTE, RatioInterval
from stepgap.report import html, idle_sections
from stepgap.report.data import step_groups
from stepgap.report.figures import PNG_DPI, render
from stepgap.report.headline import headline_section
from stepgap.report.output import check_output_path
from stepgap.report.plots import PLOTS, Plot
from stepgap.report.predict_section import predict_section
from stepgap.report.rank_section import rank_section
from stepgap.report.style import RunStyle, run_styles
from stepgap.report.tables import (
    IdentityRow,
    environment_rows,
    identity_rows,
    metric_rows,
    run_labels,
    run_warnings,
    workload_label,
)
from stepgap.report.verification import VerdictView
from stepgap.report.verify_section import verification_section
from stepgap.runs import RunData, RunError
from stepgap.summary_view import MetricRatio, compare_metrics, ratio_verdict


@dataclass(frozen=True)
class ReportInfo:
    """What `build_report` wrote and what the reader is warned about."""

    path: Path
    figures: tuple[str, ...]  # figures drawn, by name
    skipped: tuple[str, ...]  # "figure: reason" for each figure or run left out
    warnings: tuple[str, ...]  # the page's warnings box
    plot_files: tuple[Path, ...]  # PNG and SVG files under plots_dir
    size_bytes: int


def build_report(
    runs: list[RunData],
    out_path: str | Path,
    plots_dir: str | Path | None = None,
    near_tie: float = NEAR_TIE_LOGIT_MARGIN,
    verdicts: Sequence[VerdictView] = (),
) -> ReportInfo:
    """Write a self-contained HTML report of `runs` (the first is the baseline of every
    ratio and token comparison) to `out_path`, atomically; with `plots_dir`, also each
    figure as `<name>.png` and `<name>.svg` there. `verdicts` (of `stepgap verify`, read
    with `stepgap.report.verification.read_verdict_view`) add a Verification section."""
    if not runs:
        raise RunError("no runs to report")
    out_path = Path(out_path)
    check_output_path(out_path)
    if plots_dir is not None:
        check_output_path(Path(plots_dir) / "x")
    labels = run_labels(runs)
    styles = run_styles(labels, [run.mode for run in runs])
    labelled = list(zip(labels, runs, strict=True))
    plots = [build(labelled, styles) for build in PLOTS]
    warnings = run_warnings(runs, labels)
    noise = _noise_by_metric(runs)  # two runs: the ratios and their intervals, computed once
    identities = identity_rows(runs, labels, near_tie) if len(runs) > 1 else []
    skipped = [f"{plot.title}: {note}" for plot in plots for note in plot.notes]
    pngs = {plot.name: render(plot.figure, "png") for plot in plots if plot.figure is not None}
    body = "".join(
        [
            html.run_list(_legend(labelled, styles)),
            headline_section(labelled, noise, identities),
            html.warnings_box(warnings + skipped),
            _identity_section(identities, near_tie),
            verification_section(verdicts) if verdicts else "",
            _metrics_section(runs, labels, noise),
            idle_sections.sections(labelled),
            rank_section(labelled),
            predict_section(labelled),
            *(_plot_section(plot, pngs.get(plot.name)) for plot in plots),
            _environment_section(labelled, styles),
        ]
    )
    document = html.page(_title(runs), _subtitle(runs), body, _footer())
    write_file(out_path, document.encode("utf-8"))
    files = _write_plot_files(plots, pngs, Path(plots_dir)) if plots_dir is not None else []
    return ReportInfo(
        out_path,
        tuple(pngs),
        tuple(skipped),
        tuple(warnings),
        tuple(files),
        out_path.stat().st_size,
    )


def _write_plot_files(plots: list[Plot], pngs: dict[str, bytes], directory: Path) -> list[Path]:
    written = []
    for plot in plots:
        if plot.figure is None:
            continue
        written.append(write_file(directory / f"{plot.name}.png", pngs[plot.name]))
        written.append(write_file(directory / f"{plot.name}.svg", render(plot.figure, "svg")))
    return written


def _title(runs: list[RunData]) -> str:
    workloads = list(dict.fromkeys(workload_label(run) for run in runs))
    return f"stepgap report: {' vs '.join(workloads)}"


def _subtitle(runs: list[RunData]) -> str:
    devices = list(
        dict.fromkeys(
            str(run.meta.get("environment", {}).get("device", {}).get("name", "unknown device"))
            for run in runs
        )
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{len(runs)} run(s) on {', '.join(devices)} · generated {stamp}"


def _footer() -> str:
    try:
        version = metadata.version("stepgap")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return (
        f"Generated by stepgap {version} (`stepgap report`). Self-contained: every image and "
        "style is embedded; nothing is fetched from the network."
    )


def _legend(labelled: list[tuple[str, RunData]], styles: dict[str, RunStyle]) -> list:
    entries = []
    for label, run in labelled:
        steps = f"{len(run.steps):,} steps"
        groups = len(step_groups(run))
        if groups > 1:
            steps += f" in {groups} rank/stream groups"
        status = "" if run.complete else " · INCOMPLETE"
        entries.append((label, styles[label].colour, f"({run.mode} · {steps}{status})"))
    return entries


def format_value(value: Any) -> str:
    """Numbers as the console tables print them; missing values as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _identity_section(identities: list[IdentityRow], near_tie: float) -> str:
    if not identities:
        return html.section(
            "Token identity", html.note("One run: nothing to compare tokens with."), "identity"
        )
    parts = []
    for row in identities:
        pair = f"{row.other} vs {row.baseline}: "
        if row.identity is None:
            parts.append(html.verdict(pair + row.note, "unknown"))
        elif row.identity.identical:
            compared = row.identity.requests_compared
            parts.append(html.verdict(f"✓ {pair}tokens identical ({compared} requests)", "ok"))
        else:
            parts.append(html.verdict(f"✗ {pair}tokens differ — {row.note}", "bad"))
    explain = (
        f"Token ids compared per request. At the first differing position, a top-2 logit "
        f"margin under {near_tie:g} in either run makes it a numerical near-tie; anything "
        "else is a logic error."
    )
    return html.section("Token identity", "".join(parts) + html.note(explain), "identity")


def _metrics_section(runs: list[RunData], labels: list[str], noise: dict[str, MetricRatio]) -> str:
    rows = metric_rows(runs, labels)
    ratio_heads = [f"{label} / {labels[0]}" for label in labels[1:]]
    cells, classes = [], []
    for row in rows:
        cells.append(
            [row.label, *map(format_value, row.values), *(format_value(r) for r in row.ratios)]
        )
        interval = noise[row.key].noise if row.key in noise else None
        within = interval is not None and interval.within_noise  # neither better nor worse
        verdicts = ["" if within else ratio_verdict(row.better, r) for r in row.ratios]
        classes.append(["", *[""] * len(row.values), *verdicts])
        if noise:
            cells[-1].append(_noise_cell(interval))
            classes[-1].append("")
    heads = ["metric", *labels, *ratio_heads, *(["95% noise"] if noise else [])]
    body = html.table(heads, cells, classes)
    explain = (
        "Gap statistics over decode steps after warm-up; ratios are each run over the first "
        f"({labels[0]}), green where the run is better, red where worse (±1 % is even)."
        if len(runs) > 1
        else "Gap statistics over decode steps after warm-up."
    )
    if noise:
        explain += f" {NOISE_NOTE}"
    if any(len(step_groups(run)) > 1 for run in runs):
        explain += (
            " A trace's ranks and streams pool their gaps here, each group after its own "
            "warm-up; 'Per rank and stream' below has each group's own."
        )
    return html.section("Summary", body + html.note(explain), "summary")


def _noise_by_metric(runs: list[RunData]) -> dict[str, MetricRatio]:
    """Two runs: each headline metric's ratio with its bootstrap noise interval."""
    if len(runs) != 2:
        return {}
    return {row.metric.key: row for row in compare_metrics(runs[0], runs[1])}


def _noise_cell(interval: RatioInterval | None) -> str:
    if interval is None:
        return "—"
    within = " within noise" if interval.within_noise else ""
    return interval.describe(mark_proxy=True) + within


def _plot_section(plot: Plot, png: bytes | None) -> str:
    parts = []
    if png is None:
        parts.append(html.note(f"Not drawn: {'; '.join(plot.notes)}."))
    else:
        alt = f"{plot.title}: {plot.caption}"
        parts.append(html.figure(html.image(png, alt, 100 / PNG_DPI), plot.caption))
        parts.extend(html.note(f"Left out: {note}.") for note in plot.notes)
    return html.section(plot.title, "".join(parts), plot.name)


def _environment_section(labelled: list[tuple[str, RunData]], styles: dict[str, RunStyle]) -> str:
    """One table, a column per run, so differences in device, versions or command show."""
    per_run = [dict(environment_rows(run)) for _, run in labelled]
    fields = list(dict.fromkeys(name for rows in per_run for name in rows))
    rows = [[name, *(rows.get(name, "—") for rows in per_run)] for name in fields]
    heads = ["field"] + [
        f"{html.chip(styles[label].colour)}{html.escape(label)}" for label, _ in labelled
    ]
    body = html.table(heads, rows, css_class="env", header_html=heads)
    return html.section("Runs: environment and command", body, "runs")
