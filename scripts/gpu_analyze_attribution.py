"""Check `stepgap analyze`'s gap causes against a stepgap run's own phase table (GPU).

Takes a run directory made by `stepgap run --mode sync --profile` (trace.json.gz, phases.csv,
steps.csv, run.json). `stepgap analyze` reads only the trace: for every gap it names the
blocking call the host was in when the device went idle, and cuts the gap into the host
ranges open on the launching thread (`stepgap/<phase>`, the engine's own annotations).
The run measured the same gaps with its own clocks and split them by host phase
(`gap_<phase>_us` in steps.csv). Both must tell the same story:

- the gaps follow the `wait` of the step's output (a blocking synchronisation inside
  `stepgap/wait`) in at least `--min-wait-share` of the matched gaps (default 0.9);
- per phase (schedule, prepare, launch, wait, postprocess, output, other), the median over
  matched gaps of |trace µs - run µs| is at most max(--bound-us, --bound-share x the median
  gap) (defaults 5 µs and 0.1).

Trace steps are matched to run steps by their host phase sequence: the offset at which the
trace's `stepgap/<phase>` range names equal the run's phase names and their durations
differ least in spread (the profiler adds a constant cost per range; a shift by a step
changes the `wait` durations). Gaps the run excluded (arrival, profiler) are left out.

    python scripts/gpu_analyze_attribution.py RUN_DIR [--out attribution.json]

Prints the comparison as JSON (and writes it to --out, default $OUT/attribution.json when
$OUT is set). Exit 0: within the bounds; 1: they disagree; 2: nothing to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stepgap.analyze import StepRule, TraceError, analyze_traces, read_trace
from stepgap.runs import load_run

PREFIX = "stepgap/"
LOOP = "stepgap/step"  # the loop iteration: no phase of its own
NOT_PHASES = {"idle", "profiler"}
OTHER = "other"


def trace_spans(trace: Path) -> pd.DataFrame:
    """The trace's stepgap/<phase> ranges in time order: name, start_us, duration_us."""
    ranges = read_trace(trace, 0).ranges
    names = ranges.name.astype(str)
    spans = ranges[names.str.startswith(PREFIX) & (names != LOOP)]
    spans = spans.assign(name=names[spans.index], duration_us=spans.end_us - spans.start_us)
    return spans.sort_values("start_us", kind="stable").reset_index(drop=True)


def run_spans(phases: pd.DataFrame) -> pd.DataFrame:
    """The run's host phase spans in time order, named as the trace names them."""
    spans = phases[~phases.phase.isin(NOT_PHASES)].sort_values("start_us", kind="stable")
    return spans.assign(
        name=PREFIX + spans.phase, duration_us=spans.end_us - spans.start_us
    ).reset_index(drop=True)


def align(trace: pd.DataFrame, run: pd.DataFrame) -> int:
    """The offset k (trace span i is run span i + k) where names agree and durations differ
    least in spread; ValueError when no offset pairs 90 % of the names."""
    t_names, t_durations = trace.name.to_numpy(), trace.duration_us.to_numpy()
    r_names, r_durations = run.name.to_numpy(), run.duration_us.to_numpy()
    least = max(3, len(t_names) // 2)
    best = None
    for k in range(least - len(t_names), len(r_names) - least + 1):
        lo, hi = max(0, -k), min(len(t_names), len(r_names) - k)
        same = t_names[lo:hi] == r_names[lo + k : hi + k]
        if same.mean() < 0.9:
            continue
        diff = (t_durations[lo:hi] - r_durations[lo + k : hi + k])[same]
        spread = float(np.median(np.abs(diff - np.median(diff))))
        best = min(best or (math.inf, k), (spread, k))
    if best is None:
        raise ValueError("the trace's stepgap ranges match no stretch of the run's phases")
    return best[1]


def run_steps_of(analysis, trace: pd.DataFrame, run: pd.DataFrame, k: int) -> pd.Series:
    """The run step of each analyzed trace step (by its stepgap/launch range), or NaN."""
    starts = trace.start_us.to_numpy()
    hosts = analysis.steps.host_start_us.to_numpy()
    at = np.clip(np.searchsorted(starts, hosts - 1e-3), 0, len(starts) - 1)
    exact = np.abs(starts[at] - hosts) < 1e-3
    index = at + k
    valid = exact & (index >= 0) & (index < len(run))
    steps = np.full(len(hosts), np.nan)
    steps[valid] = run.step.to_numpy()[index[valid]]
    return pd.Series(steps, index=analysis.steps.step)


def phase_of(range_name: str, phases: list[str]) -> str:
    name = range_name.removeprefix(PREFIX)
    return name if range_name.startswith(PREFIX) and name in phases else OTHER


def compare(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """The comparison (a dict for JSON) and its per-gap, per-phase pairs."""
    run = load_run(run_dir)
    trace_path = run_dir / "trace.json.gz"
    if not trace_path.exists():
        raise TraceError(f"{run_dir} holds no trace.json.gz: run with --profile")
    analysis = analyze_traces([trace_path])
    if analysis.step_rule is not StepRule.STEPGAP:
        raise TraceError(
            f"the trace's steps are not stepgap/launch ranges ({analysis.step_source})"
        )
    spans = trace_spans(trace_path)
    run_phases = run_spans(run.phases)
    mapping = run_steps_of(analysis, spans, run_phases, align(spans, run_phases))
    phases = [c[4:-3] for c in run.steps.columns if c.startswith("gap_") and c.endswith("_us")]
    phases = [p for p in phases if p not in ("before", "total", "profiler")]
    pairs = _pairs(analysis, mapping, run.steps, phases)
    waits = analysis.gap_waits.assign(run_step=analysis.gap_waits.step.map(mapping))
    return _verdict(pairs, waits.dropna(subset=["run_step"]), analysis), pairs


def _pairs(analysis, mapping: pd.Series, run_steps: pd.DataFrame, phases: list[str]):
    """Per matched gap and phase: the trace's µs and the run's."""
    pieces = analysis.gap_pieces.assign(
        phase=[phase_of(r, phases) for r in analysis.gap_pieces["range"]],
        run_step=analysis.gap_pieces.step.map(mapping),
    ).dropna(subset=["run_step"])
    trace_us = pieces.groupby(["run_step", "phase"]).us.sum().unstack(fill_value=0.0)
    run = run_steps.set_index("step")
    excluded = run.get("excluded", pd.Series("", index=run.index)).fillna("").astype(str)
    kept = [s for s in trace_us.index if s in run.index and not excluded.get(s, "")]
    rows = []
    for step in kept:
        for phase in phases:
            trace_value = float(trace_us.loc[step].get(phase, 0.0))
            rows.append((int(step), phase, trace_value, float(run.loc[step, f"gap_{phase}_us"])))
    return pd.DataFrame(rows, columns=["run_step", "phase", "trace_us", "run_us"])


def _verdict(pairs: pd.DataFrame, waits: pd.DataFrame, analysis, args=None) -> dict:
    gaps = pairs.groupby("run_step").run_us.sum()
    out = {
        "matched_gaps": int(gaps.size),
        "median_gap_us": float(gaps.median()) if len(gaps) else math.nan,
        "headline": analysis.causes.get("headline"),
        "wait_share": float((waits.wait_range == f"{PREFIX}wait").mean()) if len(waits) else 0.0,
        "waits": waits.wait.value_counts().to_dict(),
        "phases": {},
    }
    for phase, rows in pairs.groupby("phase", sort=False):
        diff = (rows.trace_us - rows.run_us).abs()
        out["phases"][phase] = {
            "median_abs_diff_us": float(diff.median()),
            "p90_abs_diff_us": float(diff.quantile(0.9)),
            "trace_total_us": float(rows.trace_us.sum()),
            "run_total_us": float(rows.run_us.sum()),
        }
    return out


def judge(result: dict, bound_us: float, bound_share: float, min_wait_share: float) -> bool:
    """Within the stated bounds (module docstring)? Adds the bound and the reasons."""
    limit = max(bound_us, bound_share * (result["median_gap_us"] or 0.0))
    worst = max((p["median_abs_diff_us"] for p in result["phases"].values()), default=math.inf)
    reasons = []
    if result["matched_gaps"] == 0:
        reasons.append("no gap of the run matched a gap of the trace")
    if worst > limit:
        reasons.append(f"a phase's median |trace - run| is {worst:.2f} us > {limit:.2f} us")
    if result["wait_share"] < min_wait_share:
        reasons.append(f"only {result['wait_share']:.0%} of gaps follow the wait in stepgap/wait")
    result.update({"bound_us": limit, "passed": not reasons, "reasons": reasons})
    return not reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--bound-us", type=float, default=5.0)
    parser.add_argument("--bound-share", type=float, default=0.1)
    parser.add_argument("--min-wait-share", type=float, default=0.9)
    args = parser.parse_args()
    try:
        result, _ = compare(args.run_dir)
    except (TraceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    passed = judge(result, args.bound_us, args.bound_share, args.min_wait_share)
    text = json.dumps(result, indent=2, default=float)
    print(text)
    out = args.out or (
        Path(os.environ["OUT"]) / "attribution.json" if os.environ.get("OUT") else None
    )
    if out:
        out.write_text(text + "\n")
    if result["matched_gaps"] == 0:
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
