"""The report's figures as content: for each, gather its data from every run (`data`),
say which runs lack what, and draw it (`figures`) — or say why it is not drawn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stepgap.report import data, figures
from stepgap.report.style import RunStyle, group_styles
from stepgap.runs import RunData

MAX_LANES_PER_RUN = 8  # step groups (ranks, streams) drawn per run; the table lists them all


@dataclass(frozen=True)
class Plot:
    """One figure of the report, or the reason it is missing (`figure` None)."""

    name: str  # file stem under --plots-dir and the section anchor
    title: str
    caption: str
    figure: Figure | None
    notes: tuple[str, ...] = ()  # runs left out of the figure, and why

    def __post_init__(self) -> None:
        if not self.name.replace("-", "").isalnum():
            raise ValueError(f"plot name must be alphanumeric with dashes, got {self.name!r}")


Runs = list[tuple[str, RunData]]  # (label, run) in report order
PlotBuilder = Callable[[Runs, dict[str, RunStyle]], Plot]


def _lanes(
    runs: Runs, styles: dict[str, RunStyle], notes: list[str]
) -> list[tuple[str, data.StepGroup, RunData]]:
    """Every run's step groups as lanes (label, group, run), at most `MAX_LANES_PER_RUN`
    per run (a note says how many were left out); `styles` gains a style per lane."""
    lanes: list[tuple[str, data.StepGroup, RunData]] = []
    for label, run in runs:
        groups = data.step_groups(run)
        if len(groups) > MAX_LANES_PER_RUN:
            notes.append(
                f"{label}: {len(groups)} rank/stream groups, the first {MAX_LANES_PER_RUN} "
                "drawn (all are in the table 'Per rank and stream')"
            )
            groups = groups[:MAX_LANES_PER_RUN]
        names = [data.lane_label(label, group) for group in groups]
        styles.update(group_styles(styles[label], names))
        lanes.extend((name, group, run) for name, group in zip(names, groups, strict=True))
    return lanes


def _grouped(lanes: list[tuple[str, data.StepGroup, RunData]]) -> bool:
    return any(group.name for _, group, _ in lanes)


GROUPS_NOTE = (
    " A trace's ranks and streams are each shown on their own (one lane or line per group), "
    "every gap measured within its group: the idle since the group's earlier steps ended."
)


def timeline_plot(runs: Runs, styles: dict[str, RunStyle]) -> Plot:
    name, title = "timeline", "Device timeline"
    windows: dict = {}
    notes: list[str] = []
    styles = dict(styles)
    lanes = _lanes(runs, styles, notes)
    for lane, group, run in lanes:
        window = data.timeline_window(group.steps, data.warmup_steps(run))
        if len(window):
            windows[lane] = window
        else:
            notes.append(f"{lane}: no per-step device times; not drawn")
    caption = (
        f"In each run, a typical window of {data.TIMELINE_STEPS} consecutive decode steps "
        "after warm-up: of all such windows, the one with the median idle time. Each lane "
        "starts at its window's first step; all share one time axis. Bars: the device "
        "running a step. Red: the device idle between steps, labelled with the gap in µs; "
        "gaps narrower than a pixel still show as a line."
    )
    if _grouped(lanes):
        caption += GROUPS_NOTE + " Each lane has its own window."
    if any((w.overlap_before_us > 0).any() for w in windows.values()):
        caption += " Hatched: a step running beside the steps before it (overlap): it had no gap."
    if not windows:
        return Plot(name, title, caption, None, (*notes, "no run has per-step device times"))
    drawn = figures.timeline_figure(windows, styles, "lane" if _grouped(lanes) else "run")
    return Plot(name, title, caption, drawn, tuple(notes))


def gap_distribution_plot(runs: Runs, styles: dict[str, RunStyle]) -> Plot:
    name, title = "gap-distribution", "Gap distribution"
    samples: dict = {}
    notes: list[str] = []
    styles = dict(styles)
    lanes = _lanes(runs, styles, notes)
    for lane, group, run in lanes:
        gaps = data.group_gap_values(group.steps, data.warmup_steps(run))
        if len(gaps):
            samples[lane] = gaps
        else:
            notes.append(f"{lane}: no decode gaps after warm-up; not drawn")
    counts = ", ".join(f"{label} {len(s):,}" for label, s in samples.items())
    caption = (
        "Gaps before decode steps after warm-up, leaving out gaps in which the engine waited "
        f"for a request to arrive — the same gaps as the summary table ({counts} gaps). The CDF "
        "is drawn from quantiles; the histogram shares its bins across runs and shows each "
        "bin's share of the run's gaps."
    )
    if _grouped(lanes):
        caption += GROUPS_NOTE + " Warm-up is left out of each group."
    if not samples:
        return Plot(name, title, caption, None, (*notes, "no run has decode gaps"))
    log = data.use_log_scale(list(samples.values()))
    cdfs = {label: data.cdf_points(values) for label, values in samples.items()}
    histogram = data.histogram_counts(samples, log)
    drawn = figures.gap_distribution_figure(cdfs, histogram, log, styles)
    return Plot(name, title, caption, drawn, tuple(notes))


def gap_attribution_plot(runs: Runs, styles: dict[str, RunStyle]) -> Plot:
    name, title = "gap-attribution", "Gap attribution"
    rows, notes = {}, []
    for label, run in runs:
        means = data.gap_attribution(run)
        if means is None and run.meta.get("gap_causes"):
            notes.append(f"{label}: a trace, no host phases: see 'Why the gaps happened'")
        elif means is None:
            notes.append(f"{label}: no gap_<phase>_us columns (host phases not recorded)")
        else:
            rows[label] = means
    caption = (
        "For the same gaps as the distribution, the mean time per gap the host spent in "
        "each host phase while the device was idle (steps.csv gap_<phase>_us); 'other' is "
        "time no phase covers (launch latency, Python between phases). Bars sum to the mean "
        "gap."
    )
    if not rows:
        return Plot(name, title, caption, None, (*notes, "no run has gap attribution"))
    attribution = pd.DataFrame(rows).T
    drawn = figures.gap_attribution_figure(attribution, styles)
    return Plot(name, title, caption, drawn, tuple(notes))


def latency_plot(runs: Runs, styles: dict[str, RunStyle]) -> Plot:
    name, title = "latency", "Latency distributions: TPOT, ITL, TTFT"
    cdfs: dict[str, dict] = {metric: {} for metric in data.LATENCY_METRICS}
    pooled: dict[str, list[np.ndarray]] = {metric: [] for metric in data.LATENCY_METRICS}
    notes = []
    for label, run in runs:
        samples = data.latency_samples(run)
        missing = [data.LATENCY_METRICS[m] for m, values in samples.items() if not len(values)]
        if missing:
            notes.append(f"{label}: no {', '.join(missing)} data (no requests or token times)")
        for metric, values in samples.items():
            if len(values):
                cdfs[metric][label] = data.cdf_points(values)
                pooled[metric].append(values)
    caption = (
        "Per request: TPOT = (t_last − t_first) / (n_out − 1) and TTFT = first token − "
        "arrival; ITL: every gap between consecutive tokens of a request. Times are when "
        "tokens became visible to the host."
    )
    if not any(cdfs.values()):
        return Plot(name, title, caption, None, (*notes, "no run has request latencies"))
    log = {metric: data.use_log_scale(values) for metric, values in pooled.items()}
    drawn = figures.latency_figure({m: c for m, c in cdfs.items() if c}, log, styles)
    return Plot(name, title, caption, drawn, tuple(notes))


def throughput_plot(runs: Runs, styles: dict[str, RunStyle]) -> Plot:
    name, title = "throughput", "Output throughput over time"
    width = data.throughput_bin_width_s([run.token_times for _, run in runs])
    series, notes = {}, []
    for label, run in runs:
        frame = data.throughput_over_time(run.token_times, width)
        if len(frame):
            series[label] = frame
        else:
            notes.append(f"{label}: no token times (tokens.jsonl token_times_s); not drawn")
    caption = (
        "Output tokens that became visible to the host per second, counted in equal time "
        "bins (one width for every run) from each run's first token."
    )
    if not series:
        return Plot(name, title, caption, None, (*notes, "no run has token times"))
    return Plot(
        name, title, caption, figures.throughput_figure(series, width, styles), tuple(notes)
    )


PLOTS: tuple[PlotBuilder, ...] = (
    timeline_plot,
    gap_distribution_plot,
    gap_attribution_plot,
    latency_plot,
    throughput_plot,
)
