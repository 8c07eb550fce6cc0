"""Cross-check `stepgap analyze` against stepgap's own CUDA-event step timers (GPU).

Runs `stepgap run --mode both --profile` (the profiler records a window of decode steps),
analyzes each mode's `trace.json.gz` with `stepgap.analyze`, and compares, step by step,
the gap the trace shows with the gap the run measured with CUDA events (steps.csv).

Which trace step is which run step: the trace's `stepgap/<phase>` host ranges, in time
order, are matched to the run's host phase spans (phases.csv) at the offset where their
durations agree best — the `wait` phase alone varies enough to pin it — and the first
window step recorded in run.json (`profile_window`) is checked against the result.

Two trace-side figures per step: the plain one (device start/end = first/last kernel or
copy of the step) and the `--event-marks` one (each cudaEventRecord in the step range is
also a device mark, as the engine's own start/end events are). The gate applies to the
event-marks figures by default: those measure the same thing as the run's events.

    OUT=/tmp/out python scripts/gpu_analyze_crosscheck.py            # on the GPU machine
    OUT=/tmp/out python scripts/gpu_analyze_crosscheck.py --device cpu  # host side only

Writes $OUT/xcheck.json (the figures), $OUT/xcheck_pairs.csv (every matched step) and the
two profiler traces; the run directories stay in --run-dir. Exit 0: within the limit;
1: median |difference| above it; 2: nothing to compare (e.g. no device activity on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from stepgap.analyze import StepOptions, TraceError, analyze_traces, read_trace
from stepgap.runs import load_run

PHASE_PREFIX = "stepgap/"
STEP_RANGE = "stepgap/launch"
LOOP_RANGE = "stepgap/step"  # the loop iteration: no phase span of its own in phases.csv


def run_engine(args: argparse.Namespace, run_dir: Path) -> None:
    """`stepgap run --mode both --profile ...` in a child process, as a user runs it."""
    command = [
        *_stepgap_command(),
        "run",
        "--mode",
        "both",
        "--device",
        args.device,
        "--profile",
        "--profile-steps",
        str(args.profile_steps),
        "--workload",
        args.workload,
        "--num-requests",
        str(args.num_requests),
        "--out",
        str(run_dir),
        "--force",
    ]
    for override in args.model_override:
        command += ["--model-override", override]
    if args.output_len:
        command += ["--output-len", str(args.output_len)]
    print("+ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _stepgap_command() -> list[str]:
    found = shutil.which("stepgap")
    return [found] if found else [sys.executable, "-c", "from stepgap.cli import main; main()"]


# -- which trace step is which run step -------------------------------------------------------
def align(trace_spans: pd.DataFrame, run_spans: pd.DataFrame) -> dict:
    """The offset k (trace span i <-> run span i + k) where the host phase spans agree.

    Both frames: name, start_us, duration_us, in time order. A candidate must pair equal
    phase names; its score is the spread (median absolute deviation) of the duration
    differences, which ignores the constant cost the profiler adds to every range but
    not a shift by a step, whose `wait` durations differ."""
    t_names, t_durations = trace_spans.name.to_numpy(), trace_spans.duration_us.to_numpy()
    r_names, r_durations = run_spans.name.to_numpy(), run_spans.duration_us.to_numpy()
    minimum_pairs = max(3, len(t_names) // 2)
    scores = []
    for k in range(-len(t_names) + minimum_pairs, len(r_names) - minimum_pairs + 1):
        lo, hi = max(0, -k), min(len(t_names), len(r_names) - k)
        if np.mean(t_names[lo:hi] == r_names[lo + k : hi + k]) < 0.9:
            continue
        same = t_names[lo:hi] == r_names[lo + k : hi + k]
        diff = (t_durations[lo:hi] - r_durations[lo + k : hi + k])[same]
        scores.append((float(np.median(np.abs(diff - np.median(diff)))), k, int(same.sum())))
    if not scores:
        raise ValueError("the trace's host ranges match no stretch of the run's phases")
    scores.sort()
    best, runner_up = scores[0], scores[1] if len(scores) > 1 else (np.inf, None, 0)
    return {
        "offset": best[1],
        "pairs": best[2],
        "duration_spread_us": best[0],
        "runner_up_spread_us": runner_up[0],
        "runner_up_offset": runner_up[1],
    }


def trace_phase_spans(trace_path: Path) -> pd.DataFrame:
    """The trace's stepgap/<phase> ranges (not the loop range), in time order."""
    ranges = read_trace(trace_path, 0).ranges
    names = ranges.name.astype(str)
    spans = ranges[names.str.startswith(PHASE_PREFIX) & (names != LOOP_RANGE)]
    spans = spans.assign(name=spans.name.astype(str), duration_us=spans.end_us - spans.start_us)
    return spans.sort_values("start_us", kind="stable").reset_index(drop=True)


def run_phase_spans(phases: pd.DataFrame) -> pd.DataFrame:
    spans = phases[phases.phase != "idle"].assign(
        name=PHASE_PREFIX + phases.phase, duration_us=phases.end_us - phases.start_us
    )
    return spans.sort_values("start_us", kind="stable").reset_index(drop=True)


def match_steps(analysis_steps: pd.DataFrame, trace_spans, run_spans, offset: int) -> pd.Series:
    """Run step index of each analyzed trace step (by its launch range's start), or NaN."""
    starts = trace_spans.start_us.to_numpy()
    position = np.searchsorted(starts, analysis_steps.host_start_us.to_numpy() - 0.01)
    position = np.clip(position, 0, len(starts) - 1)
    exact = np.abs(starts[position] - analysis_steps.host_start_us.to_numpy()) < 0.01
    run_index = position + offset
    valid = exact & (run_index >= 0) & (run_index < len(run_spans))
    steps = np.full(len(analysis_steps), np.nan)
    steps[valid] = run_spans.step.to_numpy()[run_index[valid]]
    return pd.Series(steps, index=analysis_steps.index)


# -- the comparison ----------------------------------------------------------------------------
def pair_steps(trace_steps: pd.DataFrame, run_steps: pd.DataFrame, matched: pd.Series):
    """Trace rows beside the run's rows for the same steps; a gap is compared only where
    the previous trace step is the previous run step."""
    pairs = trace_steps.assign(run_step=matched).dropna(subset=["run_step"])
    pairs = pairs.astype({"run_step": np.int64})
    consecutive = pairs.run_step.diff() == 1
    run = run_steps.set_index("step")
    pairs = pairs.assign(
        run_gap_us=pairs.run_step.map(run.gap_before_us),
        run_busy_us=pairs.run_step.map(run.busy_us),
        run_kind=pairs.run_step.map(run.kind),
    )
    pairs.loc[~consecutive, "run_gap_us"] = np.nan
    return pairs


def distribution(differences: pd.Series) -> dict:
    values = differences.dropna().to_numpy()
    if not len(values):
        return {"n": 0}
    magnitude = np.abs(values)
    return {
        "n": len(values),
        "median_abs_us": float(np.median(magnitude)),
        "p90_abs_us": float(np.percentile(magnitude, 90)),
        "max_abs_us": float(magnitude.max()),
        "median_signed_us": float(np.median(values)),
    }


def check_mode(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    run = load_run(run_dir)
    if run.trace_path is None or run.phases is None:
        raise TraceError(f"{run_dir} has no trace.json.gz / phases.csv (was --profile on?)")
    trace_spans, run_spans = trace_phase_spans(run.trace_path), run_phase_spans(run.phases)
    alignment = align(trace_spans, run_spans)
    print(f"{run.mode}: host ranges aligned with the run: {alignment}", flush=True)
    window = run.meta.get("profile_window", [None, None])
    result = {"mode": run.mode, "profile_window": window, "alignment": alignment}
    frames = []
    for variant, marks in (("plain", False), ("event_marks", True)):
        analysis = analyze_traces([run.trace_path], StepOptions(event_marks=marks))
        matched = match_steps(analysis.steps, trace_spans, run_spans, alignment["offset"])
        pairs = pair_steps(analysis.steps, run.steps, matched)
        result[variant] = {
            "gap": distribution(pairs.gap_before_us - pairs.run_gap_us),
            "busy": distribution(pairs.busy_us - pairs.run_busy_us),
        }
        frames.append(pairs.assign(variant=variant, mode=run.mode))
    first = frames[0].run_step.min() if len(frames[0]) else None
    result["first_trace_step"] = None if first is None else int(first)
    return result, pd.concat(frames, ignore_index=True)


def report(results: list[dict], limit_us: float, gate: str) -> bool:
    print(f"\nper-step gap: trace (stepgap analyze) - run (CUDA events), gate on {gate}")
    header = f"{'mode':8s} {'variant':12s} {'n':>5s} {'median |d|':>11s} {'p90 |d|':>9s}"
    print(header + f" {'max |d|':>9s} {'median d':>9s}   busy median |d|")
    ok = True
    for result in results:
        for variant in ("plain", "event_marks"):
            gap, busy = result[variant]["gap"], result[variant]["busy"]
            if not gap["n"]:
                print(f"{result['mode']:8s} {variant:12s}     0  (no pairs)")
                ok = ok and variant != gate
                continue
            print(
                f"{result['mode']:8s} {variant:12s} {gap['n']:5d} {gap['median_abs_us']:11.2f}"
                f" {gap['p90_abs_us']:9.2f} {gap['max_abs_us']:9.2f}"
                f" {gap['median_signed_us']:9.2f}   {busy.get('median_abs_us', np.nan):.2f}"
            )
            if variant == gate and gap["median_abs_us"] > limit_us:
                ok = False
        a = result["alignment"]
        print(
            f"{'':8s} alignment: offset {a['offset']} over {a['pairs']} host spans, duration "
            f"spread {a['duration_spread_us']:.2f} us (next best {a['runner_up_spread_us']:.2f}"
            f" us); first trace step {result['first_trace_step']}, profile window "
            f"{result['profile_window']}"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workload", default="ernie-4.5-21b-a3b-tp4")
    parser.add_argument("--model-override", action="append", default=None)
    parser.add_argument("--num-requests", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=None)
    parser.add_argument("--profile-steps", type=int, default=200)
    parser.add_argument("--run-dir", type=Path, help="where the runs go (default: a tmp dir)")
    parser.add_argument("--skip-run", action="store_true", help="reuse --run-dir's runs")
    parser.add_argument("--limit-us", type=float, default=5.0, help="max median |difference|")
    parser.add_argument("--gate", choices=("plain", "event_marks"), default="event_marks")
    args = parser.parse_args(argv)
    args.model_override = args.model_override or ["num_layers=4"]
    out = Path(os.environ.get("OUT", "xcheck-out"))
    out.mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="stepgap-xcheck-")) / "xcheck"
    if not args.skip_run:
        run_engine(args, run_dir)
    results, frames = [], []
    for mode in ("sync", "overlap"):
        try:
            result, pairs = check_mode(run_dir / mode)
        except (TraceError, ValueError) as error:
            print(f"{mode}: cannot cross-check: {error}", file=sys.stderr)
            if args.device != "cuda":
                print("(the cross-check needs CUDA kernels: run it with --device cuda)")
            return 2
        results.append(result)
        frames.append(pairs)
        shutil.copyfile(run_dir / mode / "trace.json.gz", out / f"{mode}.trace.json.gz")
    pd.concat(frames, ignore_index=True).to_csv(out / "xcheck_pairs.csv", index=False)
    (out / "xcheck.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    ok = report(results, args.limit_us, args.gate)
    print("PASS" if ok else f"FAIL: median |gap difference| above {args.limit_us} us")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
