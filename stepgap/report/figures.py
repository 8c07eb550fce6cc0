"""The report's figures: one function per figure, from the small DataFrames of `data`.

Matplotlib only, through `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no
global state, no display). Every axis carries its unit; every run keeps its `RunStyle`.
"""

from __future__ import annotations

import io
from typing import Any, cast

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from stepgap.report.data import LATENCY_METRICS
from stepgap.report.style import IDLE_COLOUR, OVERLAP_COLOUR, PHASE_COLOURS, RunStyle

WIDTH_IN = 11.0  # drawn at 100 dpi: the page column's width in CSS pixels
PNG_DPI = 150  # 1.5x the displayed size keeps text sharp on high-density laptop screens
GAP_LABELS_MAX = 24  # annotate each gap's µs in a timeline lane when it has at most this many
LABEL_SPACING = 0.04  # of the time axis: closer gap labels would overlap; the later is left out


def _style():
    """The figures' matplotlib settings, for the figure being drawn."""
    return mpl.rc_context(cast(Any, RC))


RC: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",  # SVG text stays text: smaller and searchable
}


def _figure(height_in: float) -> Figure:
    figure = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def render(figure: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes."""
    buffer = io.BytesIO()
    with _style():
        figure.savefig(buffer, format=fmt, dpi=PNG_DPI if fmt == "png" else 100)
    return buffer.getvalue()


def _plot_cdf(axes, cdf: pd.DataFrame, style: RunStyle, label: str) -> None:
    """One run's CDF (columns value, fraction) as a step line in the run's style."""
    axes.plot(
        cdf.value,
        cdf.fraction,
        color=style.colour,
        linewidth=2,
        linestyle=style.line_style,
        label=label,
        drawstyle="steps-post",
    )


def _time_unit(span_us: float) -> tuple[str, float]:
    return ("µs", 1.0) if span_us < 2000 else ("ms", 1e-3)


def _fmt_us(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.1f} ms"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}"


def timeline_figure(
    windows: dict[str, pd.DataFrame], styles: dict[str, RunStyle], per: str = "run"
) -> Figure:
    """Device busy (mode colour) and idle (red) over a window of decode steps, one lane per
    run (per step group of an analyzed trace), every lane starting at its window's first
    step, on one time axis. A step that ran beside the steps before it (overlap) is hatched
    over that stretch and has no gap."""
    with _style():
        lanes = list(windows)
        figure = _figure(1.0 + 0.95 * len(lanes))
        axes = figure.add_subplot()
        span = max(float(w.end_us.max()) for w in windows.values())
        unit, scale = _time_unit(span)
        overlapping = False
        for i, label in enumerate(lanes):
            window, y = windows[label], len(lanes) - 1 - i
            busy = list(zip(window.start_us * scale, window.busy_us * scale, strict=True))
            axes.broken_barh(busy, (y - 0.3, 0.6), facecolors=styles[label].colour)
            overlap = _overlaps(window)
            if len(overlap):
                overlapping = True
                axes.broken_barh(
                    list(zip(overlap.start_us * scale, overlap.width_us * scale, strict=True)),
                    (y - 0.3, 0.6),
                    facecolors="none",
                    edgecolor=OVERLAP_COLOUR,
                    hatch="////",
                    linewidth=0.0,
                )
            gaps = window.dropna(subset=["gap_before_us"])
            gaps = gaps[~(gaps.overlap_before_us > 0)]  # overlapped: no gap to draw
            idle = list(
                zip(
                    (gaps.start_us - gaps.gap_before_us) * scale,
                    gaps.gap_before_us * scale,
                    strict=True,
                )
            )
            # An edge line keeps sub-pixel gaps visible: a 1 µs gap is still a red hairline.
            axes.broken_barh(
                idle, (y - 0.3, 0.6), facecolors=IDLE_COLOUR, edgecolor=IDLE_COLOUR, linewidth=0.7
            )
            if len(gaps) <= GAP_LABELS_MAX:
                last = -np.inf
                for start, gap in zip(gaps.start_us, gaps.gap_before_us, strict=True):
                    x = (start - gap / 2) * scale
                    if x - last < span * scale * LABEL_SPACING:
                        continue  # would print over the previous label: a short window
                    last = x
                    axes.text(
                        x,
                        y + 0.34,
                        _fmt_us(gap),
                        ha="center",
                        va="bottom",
                        fontsize=9.5,
                        color=IDLE_COLOUR,
                    )
        axes.set_yticks(
            range(len(lanes)), [_lane_label(windows[lab], lab) for lab in reversed(lanes)]
        )
        for tick, label in zip(axes.get_yticklabels(), reversed(lanes), strict=True):
            tick.set_color(styles[label].colour)
        axes.set_ylim(-0.6, len(lanes) - 0.2)
        axes.set_xlim(0, span * scale * 1.01)
        axes.grid(axis="y", visible=False)
        axes.set_xlabel(f"device time from the window's first step ({unit})")
        steps = max(len(w) for w in windows.values())
        axes.set_title(f"Device timeline: {steps} consecutive decode steps per {per}")
        handles = [
            Patch(color="#999999", label="busy: a step running (colour: the run)"),
            Patch(color=IDLE_COLOUR, label="idle gap (label: µs)"),
        ]
        if overlapping:
            handles.append(
                Patch(
                    facecolor="#999999",
                    edgecolor=OVERLAP_COLOUR,
                    hatch="////",
                    label="overlap: beside the step before (no gap)",
                )
            )
        figure.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return figure


def _overlaps(window: pd.DataFrame) -> pd.DataFrame:
    """Where each step of a window ran beside the steps before it: start_us, width_us."""
    if "overlap_before_us" not in window:
        return pd.DataFrame(columns=["start_us", "width_us"])
    rows = window[window.overlap_before_us > 0]
    return pd.DataFrame({"start_us": rows.start_us, "width_us": rows.overlap_before_us})


def _lane_label(window: pd.DataFrame, label: str) -> str:
    gaps = window.gap_before_us.dropna()
    if not len(gaps):
        return label
    text = f"{label}\nmean gap {_fmt_us(float(gaps.mean()))} µs".replace(" ms µs", " ms")
    overlap = window.get("overlap_before_us", pd.Series(dtype=float)).iloc[1:]
    if len(overlap) and (overlap > 0).any():
        total = _fmt_us(float(overlap.sum()))
        text += f"\noverlap: {int((overlap > 0).sum())} steps, {total} µs".replace(" ms µs", " ms")
    return text


def gap_distribution_figure(
    cdfs: dict[str, pd.DataFrame],
    histogram: pd.DataFrame,
    log: bool,
    styles: dict[str, RunStyle],
) -> Figure:
    """Gap CDF (left) and histogram as share of gaps (right), per run, on shared axes."""
    with _style():
        figure = _figure(4.0)
        cdf_axes, hist_axes = figure.subplots(1, 2)
        for label, cdf in cdfs.items():
            _plot_cdf(cdf_axes, cdf[cdf.value > 0] if log else cdf, styles[label], label)
        for label, bins in histogram.groupby("run", sort=False):
            style = styles[str(label)]
            edges = np.append(bins.left.to_numpy(), bins.right.iloc[-1])
            share = bins.share.to_numpy() * 100
            hist_axes.stairs(
                share,
                edges,
                color=style.colour,
                linestyle=style.line_style,
                linewidth=1.8,
                label=str(label),
            )
            hist_axes.stairs(share, edges, color=style.colour, alpha=0.18, fill=True)
        scale = "log scale" if log else "linear scale"
        for axes in (cdf_axes, hist_axes):
            if log:
                axes.set_xscale("log")
            axes.set_xlabel(f"gap before a decode step (µs, {scale})")
        cdf_axes.set_ylabel("fraction of gaps ≤ x")
        cdf_axes.set_ylim(0, 1.02)
        cdf_axes.set_title("Gap CDF")
        cdf_axes.legend(loc="lower right")
        hist_axes.set_ylabel("share of gaps (%)")
        hist_axes.set_title("Gap histogram")
        dropped = (
            histogram.groupby("run", sort=False).dropped.first()
            if len(histogram)
            else pd.Series(dtype=int)
        )
        notes = [f"{run}: {n:,} gaps ≤ 0 µs not shown" for run, n in dropped.items() if n]
        if notes:  # above the bars: headroom for the note
            hist_axes.set_ylim(0, hist_axes.get_ylim()[1] * (1.08 + 0.07 * len(notes)))
            hist_axes.annotate(
                "\n".join(notes),
                (0.98, 0.97),
                xycoords="axes fraction",
                ha="right",
                va="top",
                fontsize=9,
            )
    return figure


def _stacked_bars(axes, attribution: pd.DataFrame, with_labels: bool) -> np.ndarray:
    """One horizontal bar per run (top to bottom in order), one segment per phase."""
    positions = np.arange(len(attribution))[::-1]
    left = np.zeros(len(attribution))
    for phase in attribution.columns:
        values = attribution[phase].fillna(0.0).to_numpy()
        axes.barh(
            positions,
            values,
            left=left,
            height=0.6,
            label=phase if with_labels else None,
            color=PHASE_COLOURS.get(phase, "#CCCCCC"),
            edgecolor="white",
        )
        left += values
    axes.set_yticks(positions, list(attribution.index))
    axes.grid(axis="y", visible=False)
    return left


def _colour_run_ticks(axes, styles: dict[str, RunStyle]) -> None:
    for tick in axes.get_yticklabels():
        tick.set_color(styles[tick.get_text()].colour)
        tick.set_fontweight("bold")


def gap_attribution_figure(attribution: pd.DataFrame, styles: dict[str, RunStyle]) -> Figure:
    """Per run, the mean µs per gap spent in each host phase (left) and each phase's share
    of the gap (right: readable even where the overlap run's gaps are tiny)."""
    with _style():
        figure = _figure(1.6 + 0.7 * len(attribution))
        absolute, relative = figure.subplots(1, 2, width_ratios=(3, 2))
        totals = _stacked_bars(absolute, attribution, with_labels=True)
        for y, total in zip(absolute.get_yticks(), totals, strict=True):
            text = f"  {_fmt_us(total)} µs".replace(" ms µs", " ms")
            absolute.text(total, y, text, va="center", fontsize=10, fontweight="bold")
        absolute.set_xlim(0, max(float(totals.max()), 1e-9) * 1.2)
        absolute.set_xlabel("mean time per gap (µs)")
        absolute.set_title("Mean gap, split by host phase")
        shares = attribution.fillna(0.0).div(np.where(totals > 0, totals, 1.0), axis=0) * 100
        _stacked_bars(relative, shares, with_labels=False)
        relative.set_xlim(0, 100)
        relative.set_xlabel("share of the gap (%)")
        relative.set_title("Share of each phase")
        relative.tick_params(axis="y", labelleft=False)
        _colour_run_ticks(absolute, styles)
        figure.suptitle(
            "Gap attribution: where the host was while the device sat idle",
            fontsize=RC["axes.titlesize"],
            fontweight="bold",
        )
        figure.legend(loc="outside lower center", ncols=len(attribution.columns), frameon=False)
    return figure


def latency_figure(
    cdfs: dict[str, dict[str, pd.DataFrame]], log: dict[str, bool], styles: dict[str, RunStyle]
) -> Figure:
    """CDFs of TPOT, ITL and TTFT (ms) per run, one panel per metric."""
    with _style():
        figure = _figure(3.8)
        panels = figure.subplots(1, len(LATENCY_METRICS))
        for axes, (metric, name) in zip(panels, LATENCY_METRICS.items(), strict=True):
            per_run = cdfs.get(metric, {})
            for label, cdf in per_run.items():
                _plot_cdf(axes, cdf, styles[label], label)
            if not per_run:
                axes.text(
                    0.5,
                    0.5,
                    "no data",
                    ha="center",
                    va="center",
                    transform=axes.transAxes,
                    color="#777777",
                )
            elif log.get(metric):
                axes.set_xscale("log")
            scale = ", log scale" if log.get(metric) and per_run else ""
            axes.set_xlabel(f"{name} (ms{scale})")
            axes.set_title(f"{name} CDF")
            axes.set_ylim(0, 1.02)
        panels[0].set_ylabel("fraction ≤ x")
        handles, labels = [], []
        for axes in panels:
            for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        if handles:
            figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return figure


def throughput_figure(
    series: dict[str, pd.DataFrame], bin_width_s: float, styles: dict[str, RunStyle]
) -> Figure:
    """Output tokens per second over time in bins of `bin_width_s`, per run."""
    with _style():
        figure = _figure(3.6)
        axes = figure.add_subplot()
        span = max(float(s.end_s.max()) for s in series.values())
        unit, scale = ("ms", 1e3) if span < 2 else ("s", 1.0)
        for label, frame in series.items():
            style = styles[label]
            edges = np.append(frame.start_s.to_numpy(), frame.end_s.iloc[-1]) * scale
            axes.stairs(
                frame.tok_s.to_numpy(),
                edges,
                color=style.colour,
                linewidth=2,
                linestyle=style.line_style,
                label=label,
                baseline=None,
            )
        axes.set_xlim(0, span * scale * 1.01)
        axes.set_xlabel(f"time since the run's first token ({unit})")
        axes.set_ylabel("output tokens / s")
        axes.set_ylim(bottom=0)
        width = bin_width_s * scale
        axes.set_title(f"Output throughput over time (bins of {width:.3g} {unit})")
        axes.legend(loc="best")
    return figure
