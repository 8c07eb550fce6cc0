"""The analysis's numbers in one dict: gap statistics, the three idle figures, and what the
gaps were spent on.

Gap statistics come from `stepgap.metrics.summarize` (DESIGN.md's definitions), pooling
every group's gaps after its own first `warmup_steps`. The idle figures add the groups up:
idle between steps (the gaps), idle inside steps (device idle while a step was in flight),
and the device's total idle over the analysed span (each group's first step start to last
step end); each also as a fraction of the summed spans. `idle_fraction` stays the gaps'
share, as for runs, so compare and gate read traces and runs alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stepgap.analyze.causes import NO_WAIT, UNANNOTATED, Segment
from stepgap.analyze.table import STEP_COLUMNS
from stepgap.metrics import summarize

REQUEST_COLUMNS = [
    "request_id",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "max_tokens",
    "temperature",
    "finish_reason",
    "discarded_tokens",
    "ttft_ms",
    "e2e_ms",
    "tpot_ms",
    "itl_mean_ms",
    "decode_speed_tok_s",
]
UNKNOWN_FROM_TRACE = (  # summary entries a trace cannot give (no requests, no tokens)
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "completed",
    "total_input_tokens",
    "total_output_tokens",
    "num_requests",
    "token_digest",
)
TOP = 8  # causes and host ranges listed
QUEUED_CAUSE = "queued (launched before the device was free)"


def summarize_table(
    table: pd.DataFrame, keys: list[str], warmup_steps: int, idle: list[dict] | None = None
) -> dict[str, Any]:
    """The summary of a trace's step table; `idle` holds each group's idle figures."""
    groups = [rows for _, rows in table.groupby(keys, sort=True)]
    sample = pd.concat(
        [g.assign(gap_before_us=_after_warmup(g.gap_before_us, warmup_steps)) for g in groups]
    )
    spans = [_span_us(g) for g in groups]
    longest = max((len(group) for group in groups), default=0)  # steps of the longest group
    empty = pd.DataFrame(columns=REQUEST_COLUMNS)
    summary = summarize(sample[STEP_COLUMNS[:-1]], empty, {}, {}, sum(spans) / 1e6, 0)
    summary.update(idle_summary(table, idle or []))
    summary.update(
        {
            "busy_total_us": float(table.busy_us.sum()),
            "device_span_us": max(spans, default=math.nan),
            "overlap_total_us": float(table.overlap_before_us.sum()),
            "overlapping_steps": int((table.overlap_before_us > 0).sum()),
            "warmup_steps": warmup_steps,
            "num_steps": longest,
            "num_decode_steps": longest,
            "num_groups": len(groups),
        }
    )
    summary.update({key: None for key in UNKNOWN_FROM_TRACE})
    return summary


def idle_summary(table: pd.DataFrame, idle: list[dict]) -> dict[str, float]:
    """The three idle figures, summed over the groups, and their shares of the span."""
    span = sum(g["span_us"] for g in idle)
    between = sum(g["between_us"] for g in idle)
    inside = sum(g["inside_us"] for g in idle)
    total = sum(g["total_us"] for g in idle)
    share = (lambda v: v / span) if span > 0 else (lambda v: math.nan)
    return {
        "analysed_span_us": span,
        "idle_between_steps_us": between,
        "idle_inside_steps_us": inside,
        "device_idle_total_us": total,
        "idle_between_steps_fraction": share(between),
        "idle_inside_steps_fraction": share(inside),
        "device_idle_total_fraction": share(total),
        "idle_fraction": share(between),
        "gap_total_us": float(table.gap_before_us.sum()),
        "idle_inside_total_us": float(table.idle_inside_us.sum()),
    }


def summarize_causes(segments: pd.DataFrame, waits: pd.DataFrame) -> dict[str, Any]:
    """Gap time by cause (the wait before the gap), by host range and by kind of piece,
    with a one-line headline."""
    total = float(segments.us.sum()) if len(segments) else 0.0
    if total <= 0:
        return {"gap_time_us": 0.0, "headline": "no step gaps", "by_cause": [], "by_range": []}
    per_gap = segments.groupby("gap").us.sum().rename("us").reset_index()
    causes = per_gap.merge(waits, on="gap", how="left").fillna({"wait": NO_WAIT})
    queued = segments.gap[segments.segment == Segment.QUEUED].unique()
    causes.loc[causes.gap.isin(queued), ["wait", "wait_range", "after"]] = [QUEUED_CAUSE, "", ""]
    by_cause = causes.groupby(["wait", "wait_range", "after"], dropna=False).agg(
        gaps=("gap", "size"), us=("us", "sum")
    )
    by_cause = by_cause.sort_values("us", ascending=False).head(TOP).reset_index()
    host = segments[segments.segment != Segment.QUEUED]
    by_range = host.groupby("range").us.sum().sort_values(ascending=False).head(TOP)
    return {
        "gap_time_us": total,
        "headline": _headline(by_cause.iloc[0], total, by_range),
        "by_cause": [_share(row, total) for row in by_cause.to_dict("records")],
        "by_range": [
            {"range": name, "us": float(us), "share": float(us / total)}
            for name, us in by_range.items()
        ],
        "by_segment": {
            kind.value: float(segments.us[segments.segment == kind].sum()) for kind in Segment
        },
    }


def _share(row: dict, total: float) -> dict:
    return {**row, "gaps": int(row["gaps"]), "us": float(row["us"]), "share": row["us"] / total}


def _headline(top: pd.Series, total: float, by_range: pd.Series) -> str:
    share = f"{top.us / total:.0%} of gap time"
    busiest = next((name for name in by_range.index if name != UNANNOTATED), None)
    where = f"; most of the host time in `{busiest}`" if busiest else ""
    if top.wait == QUEUED_CAUSE:
        return f"{share} was queued: the step was launched before the device was free"
    if top.wait == NO_WAIT:
        return f"{share} follows no blocking call on the host{where}"
    after = f" after a {top.after}" if isinstance(top.after, str) and top.after else ""
    inside = f" inside `{top.wait_range}`" if top.wait_range else ""
    return f"{share} follows {top.wait}{after}{inside}{where}"


def gap_cause_text(waits: pd.DataFrame, segments: pd.DataFrame) -> pd.Series:
    """Per gap, one short phrase: the wait before it and where the host time went."""
    if not len(segments):
        return pd.Series(dtype=object)
    queued = segments.gap[segments.segment == Segment.QUEUED].unique()
    top = segments.sort_values("us", ascending=False).drop_duplicates("gap").set_index("gap")
    most = waits.gap.map(top.range).fillna(UNANNOTATED).astype(object)
    blocked = waits.wait != NO_WAIT
    lead = waits.wait.where(~blocked, waits.wait + " in " + waits.wait_range)
    after = (" after " + waits.after).where(blocked & (waits.after != ""), "")
    text = (lead + after + "; most in " + most).where(~waits.gap.isin(queued), QUEUED_CAUSE)
    return pd.Series(text.to_numpy(dtype=object), index=waits.gap.to_numpy())


def _after_warmup(gaps: pd.Series, warmup_steps: int) -> pd.Series:
    kept = gaps.copy()
    kept.iloc[:warmup_steps] = np.nan
    return kept


def _span_us(rows: pd.DataFrame) -> float:
    return float(rows.device_end_us.max() - rows.device_start_us.min()) if len(rows) else 0.0
