"""`analyze_traces`: foreign traces in, stepgap's per-step table and summary out.

The facade over the readers (chrome, nsys) and the stateless analyzers: read each file as
one rank, line the ranks up on one clock, find the steps (`rules`), give each step its
device work (`attribution`), measure steps, gaps and idle time per group (`table`), explain
each gap (`causes`), and summarize (`summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stepgap.analyze import causes
from stepgap.analyze.options import StepOptions
from stepgap.analyze.rank import RankResult, measure_rank
from stepgap.analyze.reader import FileProgress, expand_paths, read_trace
from stepgap.analyze.rules import StepChoice, StepRule, choose_steps, describe_range_names
from stepgap.analyze.summary import gap_cause_text, summarize_causes, summarize_table
from stepgap.analyze.table import STEP_COLUMNS
from stepgap.analyze.trace import TraceData, TraceError, shift_times

# A trace does not say which steps are prefills: every step counts as a decode step, and
# the gap statistics cover all of them after `warmup_steps`.
STEP_KIND = "decode"
TIME_DECIMALS = 3  # µs to the ns


@dataclass
class TraceAnalysis:
    """The per-step table of one or more traces (one per rank), its summary, and why each
    gap happened."""

    steps: pd.DataFrame
    summary: dict[str, Any]
    traces: list[dict[str, Any]]
    options: StepOptions
    warmup_steps: int
    step_source: str  # how the steps were found, in words
    step_rule: StepRule
    unattributed_ops: int = 0
    notes: list[str] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    causes: dict[str, Any] = field(default_factory=dict)
    gap_pieces: pd.DataFrame = field(default_factory=pd.DataFrame)  # causes.gap_segments, keyed
    gap_waits: pd.DataFrame = field(default_factory=pd.DataFrame)  # causes.gap_waits, keyed

    @property
    def format(self) -> str:
        return "+".join(sorted({t["format"] for t in self.traces}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "step_rule": self.step_rule.value,
            "step_source": self.step_source,
            "options": asdict(self.options),
            "warmup_steps": self.warmup_steps,
            "traces": self.traces,
            "unattributed_device_ops": self.unattributed_ops,
            "notes": self.notes,
            "groups": self.groups,
            "gap_causes": self.causes,
        }


def analyze_traces(
    paths: Sequence[str | Path],
    options: StepOptions | None = None,
    warmup_steps: int = 0,
    progress: FileProgress | None = None,
) -> TraceAnalysis:
    """Read the trace files (one per rank; a directory: its trace files), find the steps,
    and measure them."""
    options = options or StepOptions()
    if warmup_steps < 0:
        raise TraceError(f"--warmup-steps must be >= 0, got {warmup_steps}")
    traces = _read(paths, progress)
    notes = _align_clocks(traces)
    _require_device_work(traces)
    choice = (
        None if options.split_idle_us is not None else choose_steps(traces, options.range_pattern)
    )
    per_rank = [measure_rank(trace, choice, options) for trace in traces]
    if choice is not None and not any(len(r.rows) for r in per_rank):
        raise TraceError(
            f"host ranges match {choice.pattern!r}, but no device work was launched inside "
            "them (no runtime call in them, on any thread, whose correlation id a kernel or "
            "copy carries)"
        )
    return _result(per_rank, traces, choice, options, warmup_steps, notes)


def _read(paths: Sequence[str | Path], progress: FileProgress | None) -> list[TraceData]:
    if not paths:
        raise TraceError("no trace file given")
    files = expand_paths(paths)
    traces = [read_trace(path, rank, progress) for rank, path in enumerate(files)]
    ranks = [t.rank for t in traces]
    if len(set(ranks)) != len(ranks):
        raise TraceError(f"two files claim the same rank ({sorted(ranks)}); pass one per rank")
    return traces


def _align_clocks(traces: list[TraceData]) -> list[str]:
    """Shift each rank onto the earliest rank's clock, when every file says what its clock is."""
    if len(traces) < 2:
        return []
    origins = [t.origin_ns for t in traces]
    known = [o for o in origins if o is not None]
    if len(known) < len(origins):
        return ["ranks not aligned: some file gives no absolute time; each starts at 0"]
    first = min(known)
    for trace, origin in zip(traces, known, strict=True):
        shift_times(trace, (origin - first) / 1000.0)
    return []


def _require_device_work(traces: list[TraceData]) -> None:
    if any(len(trace.ops) for trace in traces):
        return
    raise TraceError(
        f"no device activity (kernels, memcpy, memset) in {', '.join(t.path for t in traces)}: "
        f"was it profiled with CUDA activities on a GPU? ({describe_range_names(traces)})"
    )


def _result(per_rank, traces, choice, options, warmup_steps, notes) -> TraceAnalysis:
    rows, segments, waits = _combined(per_rank)
    table = _finish(rows, options, waits, segments)
    idle = [g for r in per_rank for g in r.idle]
    described = [
        {**t.describe(), "launch_threads": r.threads} for t, r in zip(traces, per_rank, strict=True)
    ]
    unattributed = sum(r.unattributed for r in per_rank)
    rule = choice.rule if choice else StepRule.IDLE_SPLIT
    summary = summarize_table(table, options.group_keys, warmup_steps, idle)
    return TraceAnalysis(
        steps=table,
        summary={**summary, "step_rule": rule.value},
        traces=described,
        options=options,
        warmup_steps=warmup_steps,
        step_source=_source(choice, options),
        step_rule=rule,
        unattributed_ops=unattributed,
        notes=notes + _notes(unattributed, described, choice),
        groups=_groups(table, idle, options, warmup_steps),
        causes=summarize_causes(segments, waits),
        gap_pieces=_keyed(segments, rows, options),
        gap_waits=_keyed(waits, rows, options),
    )


def _combined(per_rank: list[RankResult]):
    """All ranks' rows, one index (gap ids in the pieces and waits refer to it)."""
    offsets = np.cumsum([0] + [len(r.rows) for r in per_rank])[:-1]
    ranks = list(zip(per_rank, offsets, strict=True))
    rows = pd.concat([r.rows.set_axis(r.rows.index + o) for r, o in ranks if len(r.rows)])
    segments = [r.segments.assign(gap=r.segments.gap + o) for r, o in ranks if len(r.segments)]
    waits = [r.waits.assign(gap=r.waits.gap + o) for r, o in ranks if len(r.waits)]
    return (
        rows,
        pd.concat(segments, ignore_index=True) if segments else _empty(causes.SEGMENT_COLUMNS),
        pd.concat(waits, ignore_index=True) if waits else _empty(causes.WAIT_COLUMNS),
    )


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=columns)


def _keyed(frame: pd.DataFrame, rows: pd.DataFrame, options: StepOptions) -> pd.DataFrame:
    """Gap pieces or waits with the step they precede: rank, device(, stream), step."""
    columns = list(dict.fromkeys([*options.group_keys, "stream", "step"]))
    keys = rows[columns].astype({"stream": str})
    return frame.join(keys, on="gap").drop(columns="gap").reset_index(drop=True)


def _source(choice: StepChoice | None, options: StepOptions) -> str:
    if choice is None:
        return f"rule {StepRule.IDLE_SPLIT.value}: idle gaps > {options.split_idle_us:g} us"
    return f"rule {choice.rule.value}: {choice.label}"


def _notes(unattributed: int, described: list[dict], choice: StepChoice | None) -> list[str]:
    notes = [f"{unattributed} device ops were launched outside every step range"]
    notes = notes if unattributed else []
    return notes + _thread_notes(described) + ([choice.note] if choice and choice.note else [])


def _thread_notes(traces: list[dict[str, Any]]) -> list[str]:
    notes = []
    for trace in traces:
        threads = trace["launch_threads"]
        if len(threads) > 1:
            listed = ", ".join(f"{t['tid']} ({t['device_ops']} ops)" for t in threads[:6])
            notes.append(
                f"rank {trace['rank']}: device work launched from {len(threads)} threads: {listed}"
            )
    return notes


def _finish(rows: pd.DataFrame, options: StepOptions, waits, segments) -> pd.DataFrame:
    """The rows as the final table, in STEP_COLUMNS order."""
    causes_text = gap_cause_text(waits, segments) if len(waits) else pd.Series(dtype=object)
    table = rows.sort_values([*options.group_keys, "step"], kind="stable")
    table = table.assign(
        kind=STEP_KIND,
        after_idle=False,
        stream=table.stream.astype(str),
        gap_cause=causes_text.reindex(table.index).fillna(""),
    )
    for column in ("range_name", "launch_threads"):
        table[column] = table[column].fillna("") if column in table else ""
    for column in ("host_start_us", "host_end_us", "first_launch_us"):
        if column not in table:
            table[column] = np.nan
    table = table[STEP_COLUMNS].reset_index(drop=True)
    times = [c for c in STEP_COLUMNS if c.endswith("_us")]
    table[times] = table[times].astype(float).round(TIME_DECIMALS)  # traces resolve ns
    return table


def _groups(table: pd.DataFrame, idle: list[dict], options: StepOptions, warmup: int) -> list[dict]:
    """Per rank/device(/stream): steps, gap p50 and the three idle figures."""
    out = []
    keys = options.group_keys
    for figures in idle:
        mine = np.ones(len(table), dtype=bool)
        for k in keys:
            mine &= table[k].astype(str).to_numpy() == str(figures[k])
        rows = table[mine]
        gaps = rows.gap_before_us.iloc[warmup:].dropna()
        out.append(
            {
                **{k: figures[k] for k in keys},
                "steps": len(rows),
                "gap_p50_us": float(gaps.median()) if len(gaps) else float("nan"),
                "idle_between_steps_us": figures["between_us"],
                "idle_inside_steps_us": figures["inside_us"],
                "device_idle_total_us": figures["total_us"],
                "span_us": figures["span_us"],
                "overlap_us": float(rows.overlap_before_us.sum()),
            }
        )
    return out
