"""`analyze_traces`: foreign traces in, stepgap's per-step table and summary out.

The facade over the readers (chrome, nsys) and the stateless step analyzers (steps): read
each file as one rank, line the ranks up on one clock, find the steps, build the table,
summarize it with `stepgap.metrics`, and optionally turn it into a run directory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stepgap.analyze.reader import FileProgress, expand_paths, read_trace
from stepgap.analyze.steps import (
    STEP_COLUMNS,
    StepOptions,
    attribute_ops,
    choose_step_ranges,
    describe_range_names,
    event_marks,
    split_at_idle,
    step_rows,
)
from stepgap.analyze.trace import TraceData, TraceError, shift_times

# A trace does not say which steps are prefills: every step counts as a decode step, and
# the gap statistics cover all of them after `warmup_steps`.
STEP_KIND = "decode"
TIME_DECIMALS = 3  # µs to the ns
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
    "output_throughput_tok_s",
    "decode_speed_tok_s",
    "output_tokens",
    "num_requests",
    "token_digest",
)


@dataclass
class TraceAnalysis:
    """The per-step table of one or more traces (one per rank) and its summary."""

    steps: pd.DataFrame
    summary: dict[str, Any]
    traces: list[dict[str, Any]]
    options: StepOptions
    warmup_steps: int
    step_source: str  # "range <regex>" or "idle gaps > X us"
    unattributed_ops: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return "+".join(sorted({t["format"] for t in self.traces}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "step_source": self.step_source,
            "options": asdict(self.options),
            "warmup_steps": self.warmup_steps,
            "traces": self.traces,
            "unattributed_device_ops": self.unattributed_ops,
            "notes": self.notes,
            "groups": self.groups(),
        }

    def groups(self) -> list[dict[str, Any]]:
        """Per rank/device(/stream): step count, gap p50 and total, idle inside steps."""
        out = []
        for key, rows in self.steps.groupby(self.options.group_keys, sort=True):
            gaps = rows.gap_before_us.iloc[self.warmup_steps :].dropna()
            values = key if isinstance(key, tuple) else (key,)
            out.append(
                {
                    **dict(zip(self.options.group_keys, values, strict=True)),
                    "steps": len(rows),
                    "gap_p50_us": float(gaps.median()) if len(gaps) else math.nan,
                    "gap_total_us": float(rows.gap_before_us.sum()),
                    "idle_inside_us": float(rows.idle_inside_us.sum()),
                }
            )
        return out


def analyze_traces(
    paths: list[str | Path],
    options: StepOptions | None = None,
    warmup_steps: int = 0,
    progress: FileProgress | None = None,
) -> TraceAnalysis:
    """Read the trace files (one per rank; a directory: its trace files), find the steps,
    and measure them."""
    options = options or StepOptions()
    if warmup_steps < 0:
        raise TraceError(f"--warmup-steps must be >= 0, got {warmup_steps}")
    if not paths:
        raise TraceError("no trace file given")
    files = expand_paths(paths)
    traces = [read_trace(path, rank, progress) for rank, path in enumerate(files)]
    ranks = [t.rank for t in traces]
    if len(set(ranks)) != len(ranks):
        raise TraceError(f"two files claim the same rank ({sorted(ranks)}); pass one per rank")
    notes = _align_clocks(traces)
    _require_device_work(traces)
    if options.split_idle_us is not None:
        rows = pd.concat([_timeline_rows(t, options) for t in traces], ignore_index=True)
        unattributed = 0
        source = f"idle gaps > {options.split_idle_us:g} us"
    else:
        pattern, ranges = choose_step_ranges(traces, options.range_pattern)
        rows, unattributed = _ranged_rows(traces, ranges, options, pattern)
        source = f"range {pattern}"
    table = _finish(rows, options)
    if unattributed:
        notes.append(f"{unattributed} device ops were launched outside every step range")
    summary = summarize_table(table, options.group_keys, warmup_steps)
    described = [t.describe() for t in traces]
    return TraceAnalysis(
        table, summary, described, options, warmup_steps, source, unattributed, notes
    )


def _align_clocks(traces: list[TraceData]) -> list[str]:
    """Shift each rank onto the earliest rank's clock, when every file says what its clock is."""
    if len(traces) < 2:
        return []
    origins = [t.origin_ns for t in traces]
    if any(o is None for o in origins):
        return ["ranks not aligned: some file gives no absolute time; each starts at 0"]
    first = min(origins)
    for trace, origin in zip(traces, origins, strict=True):
        shift_times(trace, (origin - first) / 1000.0)
    return []


def _require_device_work(traces: list[TraceData]) -> None:
    for trace in traces:
        if len(trace.ops):
            return
    hint = describe_range_names(traces)
    raise TraceError(
        f"no device activity (kernels, memcpy, memset) in {', '.join(t.path for t in traces)}: "
        f"was it profiled with CUDA activities on a GPU? ({hint})"
    )


def _timeline_rows(trace: TraceData, options: StepOptions) -> pd.DataFrame:
    keys = [k for k in options.group_keys if k != "rank"]
    if not len(trace.ops):
        return pd.DataFrame()
    rows = step_rows(split_at_idle(trace.ops, options.split_idle_us, keys), keys, None)
    return rows.assign(rank=trace.rank, range_name="", host_start_us=np.nan, host_end_us=np.nan)


def _ranged_rows(
    traces: list[TraceData], ranges: dict[int, pd.DataFrame], options: StepOptions, pattern: str
) -> tuple[pd.DataFrame, int]:
    keys = [k for k in options.group_keys if k != "rank"]
    frames, unattributed = [], 0
    for trace in traces:
        step_ranges = ranges[trace.rank]
        ops = attribute_ops(trace, step_ranges)
        unattributed += int((trace.ops.correlation > 0).sum()) - len(ops)
        marks = event_marks(trace, step_ranges, ops, keys) if options.event_marks else None
        info = step_ranges[["name", "start_us", "end_us"]].rename(
            columns={"name": "range_name", "start_us": "host_start_us", "end_us": "host_end_us"}
        )
        info = info.assign(range_name=info.range_name.astype(str), step=np.arange(len(info)))
        frames.append((trace.rank, ops, marks, info))
    if not any(len(ops) for _, ops, _, _ in frames):
        raise TraceError(
            f"host ranges match {pattern!r}, but no device work was launched inside them "
            "(no runtime call in them whose correlation id a kernel or copy carries)"
        )
    return pd.concat([_rank_rows(f, options) for f in frames], ignore_index=True), unattributed


def _rank_rows(frame, options: StepOptions) -> pd.DataFrame:
    rank, ops, marks, info = frame
    keys = [k for k in options.group_keys if k != "rank"]
    if not len(ops):
        return pd.DataFrame()
    rows = step_rows(ops, keys, marks)
    return rows.merge(info, on="step", how="left").assign(rank=rank)


def _finish(rows: pd.DataFrame, options: StepOptions) -> pd.DataFrame:
    """The rows as the final table, in STEP_COLUMNS order."""
    table = rows.sort_values([*options.group_keys, "step"], kind="stable")
    table = table.assign(kind=STEP_KIND, after_idle=False, stream=table.stream.astype(str))
    table = table[STEP_COLUMNS].reset_index(drop=True)
    times = [c for c in STEP_COLUMNS if c.endswith("_us")]
    table[times] = table[times].round(TIME_DECIMALS)  # traces resolve ns: drop float noise
    return table


def summarize_table(table: pd.DataFrame, keys: list[str], warmup_steps: int) -> dict[str, Any]:
    """DESIGN.md's summary of a trace's steps, through `stepgap.metrics.summarize`.

    Gap statistics pool every group's gaps after its own first `warmup_steps`; totals add
    the groups up, and the idle fraction is their gaps over their summed device spans.
    Entries a trace cannot give (requests, tokens, throughput) are None.
    """
    from stepgap.metrics import summarize  # imports the engine (torch): only when needed

    groups = [rows for _, rows in table.groupby(keys, sort=True)]
    sample = pd.concat(
        [g.assign(gap_before_us=_after_warmup(g.gap_before_us, warmup_steps)) for g in groups]
    )
    span_s = sum(_span_us(g) for g in groups) / 1e6
    empty = pd.DataFrame(columns=REQUEST_COLUMNS)
    summary = summarize(sample, empty, {}, {}, span_s, warmup_steps=0)
    gaps_total = float(table.gap_before_us.sum())
    spans = sum(_span_us(g) for g in groups)
    summary.update(
        {
            "gap_total_us": gaps_total,
            "busy_total_us": float(table.busy_us.sum()),
            "idle_inside_total_us": float(table.idle_inside_us.sum()),
            "device_span_us": max((_span_us(g) for g in groups), default=math.nan),
            "idle_fraction": gaps_total / spans if spans > 0 else math.nan,
            "warmup_steps": warmup_steps,
            "num_steps": int(table.groupby(keys).size().max()) if len(table) else 0,
            "num_decode_steps": int(table.groupby(keys).size().max()) if len(table) else 0,
            "num_groups": len(groups),
        }
    )
    summary.update({key: None for key in UNKNOWN_FROM_TRACE})
    return summary


def _after_warmup(gaps: pd.Series, warmup_steps: int) -> pd.Series:
    kept = gaps.copy()
    kept.iloc[:warmup_steps] = np.nan
    return kept


def _span_us(rows: pd.DataFrame) -> float:
    return float(rows.device_end_us.max() - rows.device_start_us.min()) if len(rows) else 0.0
