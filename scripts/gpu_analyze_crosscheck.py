"""Cross-check the engine's step timers against the device's own timeline (GPU).

Runs `stepgap run --mode both --profile` (the PyTorch profiler records a window of decode
steps) and compares, step by step, the gap the run measured with its timing events
(steps.csv) with the **device truth** computed here from the run's `trace.json.gz` with
plain `json`, independently of stepgap's own readers: the device ops (kernels, memcpys,
memsets) a `stepgap/launch` range launched — matched by the correlation id of their launch
call — give each step's interval [first op start, last op end]; the true gap before step N
is first op(N) - last op(N-1), and the step boundary is last kernel(N-1) -> first
kernel(N). The gate is on |engine gap - true gap|.

Which trace step is which run step: the trace's `stepgap/<phase>` host ranges, in time
order, are matched to the run's host phase spans (phases.csv) at the offset where their
durations agree best — the `wait` phase alone varies enough to pin it.

    OUT=/tmp/out python scripts/gpu_analyze_crosscheck.py --label ernie-4l    # GPU machine
    OUT=/tmp/out python scripts/gpu_analyze_crosscheck.py --run-dir DIR --skip-run

Writes $OUT/xcheck-<label>.json (per mode: n, median / p90 / max |difference|, true gap and
boundary percentiles, throughput) and $OUT/xcheck-<label>-pairs.csv (every matched step).
Exit 0: within the limits; 1: above them; 2: nothing to compare.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from stepgap.runs import load_run

PHASE_PREFIX = "stepgap/"
STEP_RANGE = "stepgap/launch"
LOOP_RANGE = "stepgap/step"  # the loop iteration: no phase span of its own in phases.csv
HOST_PAUSES = ("idle", "profiler")  # phases.csv spans the trace shows no range for
DEVICE_OPS = {"kernel", "gpu_memcpy", "gpu_memset"}


class CrosscheckError(Exception):
    """Nothing to compare: no trace, no device ops, no alignment."""


def run_engine(args: argparse.Namespace, run_dir: Path) -> None:
    """`stepgap run --mode both --profile ...` in a child process, as a user runs it."""
    command = [*_stepgap_command(), "run", "--mode", "both", "--device", args.device]
    command += ["--profile", "--profile-steps", str(args.profile_steps)]
    command += ["--workload", args.workload, "--num-requests", str(args.num_requests)]
    command += ["--out", str(run_dir), "--force"]
    for override in args.model_override:
        command += ["--model-override", override]
    if args.output_len:
        command += ["--output-len", str(args.output_len)]
    print("+ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _stepgap_command() -> list[str]:
    found = shutil.which("stepgap")
    return [found] if found else [sys.executable, "-c", "from stepgap.cli import main; main()"]


# -- the device truth, from the trace with plain json ---------------------------------------
def trace_events(trace_path: Path) -> list[dict]:
    with gzip.open(trace_path, "rt") as file:
        return json.load(file)["traceEvents"]


def host_ranges(events: list[dict]) -> pd.DataFrame:
    """The trace's stepgap/<phase> ranges (not the loop range): name, tid, start_us,
    duration_us, in time order."""
    rows = [
        (e["name"], e.get("tid"), float(e["ts"]), float(e.get("dur", 0.0)))
        for e in events
        if e.get("ph") == "X"
        and e.get("cat") == "user_annotation"
        and str(e.get("name", "")).startswith(PHASE_PREFIX)
        and e["name"] != LOOP_RANGE
    ]
    frame = pd.DataFrame(rows, columns=["name", "tid", "start_us", "duration_us"])
    return frame.sort_values("start_us", kind="stable").reset_index(drop=True)


def device_truth(events: list[dict], launches: pd.DataFrame) -> pd.DataFrame:
    """Per launch range: first/last device op and first/last kernel (µs, trace clock)."""
    calls = {}  # correlation id -> (tid, ts) of the runtime call that launched it
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {}):
            calls[e["args"]["correlation"]] = (e.get("tid"), float(e["ts"]))
    ops = []
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in DEVICE_OPS:
            call = calls.get(e.get("args", {}).get("correlation"))
            if call is not None:
                start = float(e["ts"])
                ops.append((*call, start, start + float(e["dur"]), e["cat"] == "kernel"))
    frame = pd.DataFrame(ops, columns=["tid", "call_us", "start_us", "end_us", "kernel"])
    return pd.DataFrame([_step_ops(frame, launch) for launch in launches.itertuples()])


def _step_ops(ops: pd.DataFrame, launch) -> dict:
    """The device ops whose launch call lies inside one launch range of the same thread."""
    inside = ops[
        (ops.tid == launch.tid)
        & (ops.call_us >= launch.start_us)
        & (ops.call_us <= launch.start_us + launch.duration_us)
    ]
    kernels = inside[inside.kernel]
    return {
        "launch_us": launch.start_us,
        "ops": len(inside),
        "first_op_us": inside.start_us.min(),
        "last_op_us": inside.end_us.max(),
        "first_kernel_us": kernels.start_us.min(),
        "last_kernel_us": kernels.end_us.max(),
    }


# -- which trace step is which run step -------------------------------------------------------
def align(trace_spans: pd.DataFrame, run_spans: pd.DataFrame) -> dict:
    """The offset k (trace span i <-> run span i + k) where the host phase spans agree.

    Both frames: name, duration_us, in time order. A candidate must pair equal phase names;
    its score is the spread (median absolute deviation) of the duration differences, which
    ignores the constant cost the profiler adds to every range but not a shift by a step,
    whose `wait` durations differ."""
    t_names, t_durations = trace_spans.name.to_numpy(), trace_spans.duration_us.to_numpy()
    r_names, r_durations = run_spans.name.to_numpy(), run_spans.duration_us.to_numpy()
    minimum_pairs = max(3, len(t_names) // 2)
    scores = []
    for k in range(-len(t_names) + minimum_pairs, len(r_names) - minimum_pairs + 1):
        lo, hi = max(0, -k), min(len(t_names), len(r_names) - k)
        same = t_names[lo:hi] == r_names[lo + k : hi + k]
        if np.mean(same) < 0.9:
            continue
        diff = (t_durations[lo:hi] - r_durations[lo + k : hi + k])[same]
        scores.append((float(np.median(np.abs(diff - np.median(diff)))), k, int(same.sum())))
    if not scores:
        raise CrosscheckError("the trace's host ranges match no stretch of the run's phases")
    scores.sort()
    best, runner_up = scores[0], scores[1] if len(scores) > 1 else (np.inf, None, 0)
    return {
        "offset": best[1],
        "pairs": best[2],
        "duration_spread_us": best[0],
        "runner_up_spread_us": runner_up[0],
        "runner_up_offset": runner_up[1],
    }


def run_phase_spans(phases: pd.DataFrame) -> pd.DataFrame:
    spans = phases[~phases.phase.isin(HOST_PAUSES)]
    spans = spans.assign(name=PHASE_PREFIX + spans.phase, duration_us=spans.end_us - spans.start_us)
    return spans.sort_values("start_us", kind="stable").reset_index(drop=True)


def run_steps_of_launches(trace_spans, run_spans, offset: int) -> np.ndarray:
    """Run step index of each trace launch range (in time order), or -1."""
    positions = np.flatnonzero(trace_spans.name.to_numpy() == STEP_RANGE)
    run_index = positions + offset
    steps = np.full(len(positions), -1)
    valid = (run_index >= 0) & (run_index < len(run_spans))
    steps[valid] = run_spans.step.to_numpy()[run_index[valid]]
    return steps


# -- the comparison ----------------------------------------------------------------------------
def pair_steps(truth: pd.DataFrame, run_steps: pd.DataFrame) -> pd.DataFrame:
    """Truth beside the run's rows; a gap is compared only where the previous trace step is
    the previous run step."""
    truth = truth[(truth.run_step >= 0) & (truth.ops > 0)].reset_index(drop=True)
    consecutive = truth.run_step.diff() == 1
    run = run_steps.set_index("step")
    pairs = truth.assign(
        run_gap_us=truth.run_step.map(run.gap_before_us),
        run_busy_us=truth.run_step.map(run.busy_us),
        run_kind=truth.run_step.map(run.kind),
        true_gap_us=(truth.first_op_us - truth.last_op_us.shift(1)).where(consecutive),
        boundary_us=(truth.first_kernel_us - truth.last_kernel_us.shift(1)).where(consecutive),
        true_busy_us=truth.last_op_us - truth.first_op_us,
    )
    return pairs.assign(gap_difference_us=pairs.run_gap_us - pairs.true_gap_us)


def distribution(values: pd.Series, magnitude: bool = False) -> dict:
    data = values.dropna().to_numpy(dtype=float)
    if not len(data):
        return {"n": 0}
    data = np.abs(data) if magnitude else data
    return {
        "n": len(data),
        "p50": float(np.median(data)),
        "p90": float(np.percentile(data, 90)),
        "max": float(data.max()),
    }


def check_mode(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    run = load_run(run_dir)
    if run.trace_path is None or run.phases is None:
        raise CrosscheckError(f"{run_dir} has no trace.json.gz / phases.csv (was --profile on?)")
    events = trace_events(run.trace_path)
    trace_spans, run_spans = host_ranges(events), run_phase_spans(run.phases)
    alignment = align(trace_spans, run_spans)
    print(f"{run.mode}: host ranges aligned with the run: {alignment}", flush=True)
    launches = trace_spans[trace_spans.name == STEP_RANGE]
    truth = device_truth(events, launches)
    if truth.empty or not truth.ops.any():
        raise CrosscheckError(f"{run_dir}: the trace holds no device ops of stepgap/launch ranges")
    truth["run_step"] = run_steps_of_launches(trace_spans, run_spans, alignment["offset"])
    pairs = pair_steps(truth, run.steps).assign(mode=run.mode)
    decode = pairs[pairs.run_kind == "decode"]
    result = {
        "mode": run.mode,
        "profile_window": run.meta.get("profile_window"),
        "alignment": alignment,
        "gap_difference_abs_us": distribution(decode.gap_difference_us, magnitude=True),
        "gap_difference_signed_median_us": float(decode.gap_difference_us.median()),
        "busy_difference_abs_us": distribution(decode.run_busy_us - decode.true_busy_us, True),
        "engine_gap_us": distribution(decode.run_gap_us),
        "true_gap_us": distribution(decode.true_gap_us),
        "boundary_us": distribution(decode.boundary_us),
        "all_steps_gap_difference_abs_us": distribution(pairs.gap_difference_us, True),
        "summary": {k: run.summary.get(k) for k in SUMMARY_KEYS},
    }
    return result, pairs


SUMMARY_KEYS = ("gap_p50_us", "idle_fraction", "tpot_p50_ms", "output_throughput_tok_s")


def report(results: list[dict], median_limit_us: float, p90_limit_us: float) -> bool:
    """Print the table; True when every mode is within both limits."""
    print(
        f"\nengine gap - device truth, decode steps (limits: median {median_limit_us} µs, "
        f"p90 {p90_limit_us} µs)"
    )
    print(
        f"{'mode':8s} {'n':>5s} {'med |d|':>8s} {'p90 |d|':>8s} {'max |d|':>9s} "
        f"{'true gap p50':>12s} {'p90':>8s} {'boundary p50':>12s} {'engine gap p50':>14s}"
    )
    ok = True
    for r in results:
        d, truth, boundary = r["gap_difference_abs_us"], r["true_gap_us"], r["boundary_us"]
        if not d["n"]:
            print(f"{r['mode']:8s}     0  (no pairs)")
            ok = False
            continue
        print(
            f"{r['mode']:8s} {d['n']:5d} {d['p50']:8.2f} {d['p90']:8.2f} {d['max']:9.2f} "
            f"{truth['p50']:12.2f} {truth['p90']:8.2f} {boundary.get('p50', np.nan):12.2f} "
            f"{r['engine_gap_us']['p50']:14.2f}"
        )
        ok = ok and d["p50"] <= median_limit_us and d["p90"] <= p90_limit_us
    by_mode = {r["mode"]: r["summary"]["output_throughput_tok_s"] for r in results}
    if {"sync", "overlap"} <= set(by_mode) and by_mode["sync"]:
        print(f"overlap/sync output throughput: {by_mode['overlap'] / by_mode['sync']:.4f}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workload", default="ernie-4.5-21b-a3b-tp4")
    parser.add_argument("--model-override", action="append", default=None)
    parser.add_argument("--num-requests", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=None)
    parser.add_argument("--profile-steps", type=int, default=100)
    parser.add_argument("--run-dir", type=Path, help="where the runs go (default: a tmp dir)")
    parser.add_argument("--skip-run", action="store_true", help="reuse --run-dir's runs")
    parser.add_argument("--label", default="xcheck", help="names the output files")
    parser.add_argument("--median-limit-us", type=float, default=2.0)
    parser.add_argument("--p90-limit-us", type=float, default=5.0)
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
        except CrosscheckError as error:
            print(f"{mode}: cannot cross-check: {error}", file=sys.stderr)
            return 2
        results.append(result)
        frames.append(pairs)
    pd.concat(frames, ignore_index=True).to_csv(out / f"{args.label}-pairs.csv", index=False)
    (out / f"{args.label}.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    ok = report(results, args.median_limit_us, args.p90_limit_us)
    print("PASS" if ok else "FAIL: engine gaps differ from the device truth beyond the limits")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
