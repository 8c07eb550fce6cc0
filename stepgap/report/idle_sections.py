"""The report's sections on where the device sat idle, from `stepgap analyze` runs: the
three idle figures, the figures per rank and stream, and why the gaps happened.

Each section appears only when a run has what it shows (an engine run has one step group,
no idle-inside figure and no gap causes: its report keeps the sections it always had).
Numbers come from run.json (`summary`, `groups`, `gap_causes`, as `stepgap analyze`
writes and prints them) and, per group, from steps.csv; summary keys are read through small
lookups with fallbacks (`SPAN_KEYS`, `IDLE_FIGURES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stepgap.report import data, html
from stepgap.runs import RunData

Runs = Sequence[tuple[str, RunData]]  # (label, run) in report order
SPAN_KEYS = ("analysed_span_us", "device_span_us")  # an engine run: its device span
OVERLAP_KEYS = ("overlap_total_us",)
TRACE_IDLE_KEYS = ("idle_inside_steps_us", "device_idle_total_us")  # only analyze has these
ZERO_US = 0.0005  # below half a ns: rounding noise of sums, shown as 0


@dataclass(frozen=True)
class IdleFigure:
    """One of the three idle figures: its plain name, the summary keys of its µs (first
    present wins) and of its share of the analysed span (else µs / span)."""

    name: str
    keys: tuple[str, ...]
    share_keys: tuple[str, ...]


IDLE_FIGURES = (
    IdleFigure(
        "idle between steps",
        ("idle_between_steps_us", "gap_total_us"),
        ("idle_between_steps_fraction",),
    ),
    IdleFigure("idle inside steps", ("idle_inside_steps_us",), ("idle_inside_steps_fraction",)),
    IdleFigure(
        "total device idle over the analysed span",
        ("device_idle_total_us",),
        ("device_idle_total_fraction",),
    ),
)
SEGMENTS = {  # gap_causes.by_segment: what each piece of gap time was, in plain words
    "sync_wait": "host blocked in a synchronising call after the device finished",
    "host_range": "host work inside an annotated host range",
    "unannotated": "host work outside every host range",
    "launch_latency": "from the step's first launch call to its first device op",
    "queued": "queued: launched before the device was free",
}


def lookup(summary: Mapping[str, Any], keys: Sequence[str]) -> float:
    """The first of `keys` the summary holds as a number; NaN if none."""
    for key in keys:
        value = summary.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return math.nan


def fmt_us(value: float) -> str:
    """µs to the ns; rounding noise of sums (|v| < 0.5 ns) shows as 0; missing: —."""
    if value is None or math.isnan(value):
        return "—"
    return f"{0.0 if abs(value) < ZERO_US else value:,.3f}"


def fmt_share(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{0.0 if abs(value) < 5e-7 else value * 100:.1f} %"


# -- the three idle figures -------------------------------------------------------------


@dataclass(frozen=True)
class IdleRow:
    """One idle figure for every run: µs and share of the run's analysed span."""

    name: str
    us: tuple[float, ...]
    share: tuple[float, ...]


def idle_rows(runs: Runs) -> list[IdleRow]:
    """The analysed span, the three idle figures and the steps' overlap, per run."""
    spans = [lookup(run.summary, SPAN_KEYS) for _, run in runs]
    rows = [
        IdleRow("analysed span", tuple(spans), tuple(1.0 if s > 0 else math.nan for s in spans))
    ]
    for figure in IDLE_FIGURES:
        us, shares = [], []
        for (_, run), span in zip(runs, spans, strict=True):
            value = lookup(run.summary, figure.keys)
            share = lookup(run.summary, figure.share_keys)
            if math.isnan(share) and span > 0:
                share = value / span
            us.append(value)
            shares.append(share)
        rows.append(IdleRow(figure.name, tuple(us), tuple(shares)))
    overlap = [_overlap_us(run) for _, run in runs]
    pairs = zip(overlap, spans, strict=True)
    overlap_shares = tuple(o / s if s > 0 else math.nan for o, s in pairs)
    rows.append(
        IdleRow(
            "steps overlapping the steps before them (not idle)", tuple(overlap), overlap_shares
        )
    )
    return rows


def _overlap_us(run: RunData) -> float:
    value = lookup(run.summary, OVERLAP_KEYS)
    if math.isnan(value) and "overlap_before_us" in run.steps.columns:
        return float(run.steps.overlap_before_us.sum())
    return value


def has_idle_figures(run: RunData) -> bool:
    return any(not math.isnan(lookup(run.summary, (key,))) for key in TRACE_IDLE_KEYS)


def idle_section(runs: Runs) -> str:
    """The three idle figures per run; "" when no run was analyzed from a trace."""
    if not any(has_idle_figures(run) for _, run in runs):
        return ""
    rows = idle_rows(runs)
    if len(runs) == 1:
        columns = ["", "µs", "of the analysed span"]
    else:
        columns = [""] + [f"{label} {unit}" for label, _ in runs for unit in ("(µs)", "(of span)")]
    cells = [
        [
            row.name,
            *(
                c
                for us, s in zip(row.us, row.share, strict=True)
                for c in (fmt_us(us), fmt_share(s))
            ),
        ]
        for row in rows
    ]
    explain = (
        "Idle between steps: the device idle from the end of a step group's earlier steps to "
        "the next step's start (the gaps; the summary's idle fraction is its share). Idle "
        "inside steps: the device idle while a step was in flight (no kernel, copy or memset "
        "running). Total device idle over the analysed span: the time no device work ran "
        "between each group's first step start and last step end, summed over the groups "
        "(ranks, devices, streams) — the two above less any device work outside every step. "
        "Overlap is not idle: the time steps ran beside the ones before them. — : not "
        "measured (an engine run's step timers see only the gaps between steps)."
    )
    body = html.table(columns, cells, css_class="idle") + html.note(explain)
    return html.section("Device idle: between steps, inside steps, in total", body, "device-idle")


# -- per rank and stream --------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRow:
    """One step group of a run (a rank, device and stream): its gaps and idle figures."""

    run: str
    key: dict[str, Any]
    steps: int
    gaps: int  # gaps counted: after the group's warm-up
    gap_p50_us: float
    gap_mean_us: float
    gap_max_us: float
    idle_between_steps_us: float
    idle_inside_steps_us: float
    device_idle_total_us: float
    span_us: float
    overlap_us: float


def group_rows(label: str, run: RunData) -> list[GroupRow]:
    """Every step group of the run. Gap statistics from its rows in steps.csv (after the
    group's own warm-up); idle figures from run.json's `groups` entry for the group, else
    summed from its rows (no total then: that needs the trace's device work)."""
    warmup = data.warmup_steps(run)
    groups = run.meta.get("groups")
    entries: list[Any] = groups if isinstance(groups, list) else []
    out = []
    for group in data.step_groups(run):
        steps = group.steps
        gaps = data.group_gap_values(steps, warmup)
        entry = _entry(entries, group.key)
        sums = {
            column: float(steps[column].sum()) if column in steps.columns else math.nan
            for column in ("gap_before_us", "idle_inside_us", "overlap_before_us")
        }
        span = float(steps.device_end_us.max() - steps.device_start_us.min()) if len(steps) else 0.0
        out.append(
            GroupRow(
                run=label,
                key=group.key,
                steps=len(steps),
                gaps=len(gaps),
                gap_p50_us=float(np.percentile(gaps, 50)) if len(gaps) else math.nan,
                gap_mean_us=float(gaps.mean()) if len(gaps) else math.nan,
                gap_max_us=float(gaps.max()) if len(gaps) else math.nan,
                idle_between_steps_us=_from(
                    entry, ("idle_between_steps_us",), sums["gap_before_us"]
                ),
                idle_inside_steps_us=_from(
                    entry, ("idle_inside_steps_us",), sums["idle_inside_us"]
                ),
                device_idle_total_us=_from(entry, ("device_idle_total_us",), math.nan),
                span_us=_from(entry, ("span_us", "analysed_span_us"), span),
                overlap_us=_from(
                    entry, ("overlap_us", "overlap_total_us"), sums["overlap_before_us"]
                ),
            )
        )
    return out


def _entry(entries: list, key: dict[str, Any]) -> dict[str, Any]:
    """run.json's `groups` entry of the group with this key; {} if none."""
    for entry in entries:
        if isinstance(entry, dict) and all(
            k in entry and data.plain(entry[k]) == data.plain(v) for k, v in key.items()
        ):
            return entry
    return {}


def _from(entry: Mapping[str, Any], keys: Sequence[str], fallback: float) -> float:
    value = lookup(entry, keys)
    return fallback if math.isnan(value) else value


GROUP_COLUMNS = [
    ("steps", "steps"),
    ("gaps", "gaps counted"),
    ("gap_p50_us", "gap p50 (µs)"),
    ("gap_mean_us", "gap mean (µs)"),
    ("gap_max_us", "gap max (µs)"),
    ("idle_between_steps_us", "idle between steps (µs)"),
    ("idle_inside_steps_us", "idle inside steps (µs)"),
    ("device_idle_total_us", "total device idle (µs)"),
    ("span_us", "analysed span (µs)"),
    ("overlap_us", "overlap (µs)"),
]


def groups_section(runs: Runs) -> str:
    """A row per rank, device and stream of every run with more than one step group; ""
    when none has."""
    grouped = [(label, run) for label, run in runs if len(data.step_groups(run)) > 1]
    if not grouped:
        return ""
    keys = list(dict.fromkeys(k for _, run in grouped for k in data.group_keys(run)))
    named = len(runs) > 1  # say which run each row is of
    columns = [*(["run"] if named else []), *keys, *(name for _, name in GROUP_COLUMNS)]
    cells = []
    for label, run in grouped:
        for row in group_rows(label, run):
            values = [
                f"{getattr(row, f):,}"
                if isinstance(getattr(row, f), int)
                else fmt_us(getattr(row, f))
                for f, _ in GROUP_COLUMNS
            ]
            ids = [data.plain(row.key[k]) if k in row.key else "—" for k in keys]
            cells.append([*([label] if named else []), *ids, *values])
    explain = (
        "A trace's step groups — one per rank and device, and per stream when analyzed with "
        "--streams separate — each measured on its own: a gap is the idle since the group's "
        "earlier steps ended (0 where a step started before they ended: that time is its "
        "overlap), never a difference between two groups. Gap statistics leave out each "
        "group's first warm-up steps; idle figures cover the group's span, from its first "
        "step's start to its last step's end."
    )
    body = html.table(columns, cells, css_class="groups") + html.note(explain)
    return html.section("Per rank and stream", body, "groups")


# -- why the gaps happened ----------------------------------------------------------------


@dataclass(frozen=True)
class Causes:
    """A run's `gap_causes` as the report shows them."""

    headline: str
    gap_time_us: float
    by_cause: list[list[str]]  # wait, inside, waited for, gaps, µs, share
    by_range: list[list[str]]  # range, µs, share
    by_segment: list[list[str]]  # what the time was, µs, share


def causes_of(run: RunData) -> Causes | None:
    """The run's gap causes (run.json `gap_causes`), formatted; None when it has none."""
    causes = run.meta.get("gap_causes")
    if not isinstance(causes, dict) or not causes.get("headline"):
        return None
    total = lookup(causes, ("gap_time_us",))
    by_cause = [
        [
            _text(c.get("wait")),
            _text(c.get("wait_range")),
            _text(c.get("after")),
            f"{int(c.get('gaps') or 0):,}",
            fmt_us(lookup(c, ("us",))),
            fmt_share(lookup(c, ("share",))),
        ]
        for c in causes.get("by_cause") or []
        if isinstance(c, dict)
    ]
    by_range = [
        [_text(r.get("range")), fmt_us(lookup(r, ("us",))), fmt_share(lookup(r, ("share",)))]
        for r in causes.get("by_range") or []
        if isinstance(r, dict)
    ]
    found = causes.get("by_segment")
    segments: dict[str, Any] = found if isinstance(found, dict) else {}
    by_segment = []
    for kind, us in segments.items():
        us = float(us) if isinstance(us, int | float) else math.nan
        if not us > ZERO_US:
            continue
        share = us / total if total > 0 else math.nan
        by_segment.append([SEGMENTS.get(kind, str(kind)), fmt_us(us), fmt_share(share)])
    return Causes(str(causes["headline"]), total, by_cause, by_range, by_segment)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def causes_section(runs: Runs) -> str:
    """The headline and gap time by cause, host range and kind, per run; "" when no run
    has gap causes."""
    found = [(label, causes) for label, run in runs if (causes := causes_of(run)) is not None]
    if not found:
        return ""
    parts = []
    for label, causes in found:
        if len(runs) > 1:
            parts.append(f"<h3>{html.escape(label)}</h3>")
        parts.append(
            f'<div class="verdict unknown">Why the gaps: {html.inline_code(causes.headline)}</div>'
        )
        if causes.by_cause:
            parts += [
                f"<h4>Gap time by cause (of {fmt_us(causes.gap_time_us)} µs)</h4>",
                html.table(
                    [
                        "host wait before the gap",
                        "inside (host range)",
                        "waited for",
                        "gaps",
                        "µs",
                        "share",
                    ],
                    causes.by_cause,
                    css_class="causes",
                ),
            ]
        if causes.by_range:
            parts += [
                "<h4>Gap time by host range</h4>",
                html.table(["host range", "µs", "share"], causes.by_range),
            ]
        if causes.by_segment:
            parts += [
                "<h4>Gap time by what it was</h4>",
                html.table(["what the gap time was", "µs", "share"], causes.by_segment),
            ]
    explain = (
        "From stepgap analyze: for every gap, what the host was doing from the end of the "
        "device work before it to the step's first device op. Host wait: the blocking call "
        "(cudaStreamSynchronize, a pageable cudaMemcpy — the .item() / .tolist() kind, …) "
        "open on the launching thread when the device went idle, the host range it was called "
        "in, and the device work it waited for; 'queued': the step was launched before the "
        "device was free, so the host was not the cause. Host range: the engine's annotation "
        "open on the host during the gap. The largest causes and ranges are listed; shares "
        "are of all gap time."
    )
    return html.section("Why the gaps happened", "".join(parts) + html.note(explain), "gap-causes")


def sections(runs: Runs) -> str:
    """The idle, per-group and gap-cause sections, each only where a run has its data."""
    return idle_section(runs) + groups_section(runs) + causes_section(runs)
