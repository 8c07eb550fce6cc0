"""Benchmark: `stepgap report` on a synthetic 100 000-step run (and a sync + overlap pair).

Synthesizes run directories in the exact on-disk format of `stepgap run` (written with
`stepgap.runs.save_run`, summary from `stepgap.metrics.summarize`): a continuous-batching
decode loop with `--concurrency` slots, a prefill step whenever slots free up, device busy
and gap times drawn per step (sync: ~150 µs gaps; overlap: ~15 µs; 1 % outliers ten times
longer), six host-phase spans per step in phases.csv, gap attribution columns, one token
per running request per step with its host arrival time and top-2 margin in tokens.jsonl,
and requests.csv. Then it times, pinned to `--cores` CPUs, loading the runs, building the
report (`stepgap.report.build_report`) and the whole command (`stepgap report`, in a fresh
process: imports included), and prints the table with the machine and versions.

    python benchmarks/report_bench.py                    # 100 000 steps, 2 cores
    python benchmarks/report_bench.py --steps 20000 --reps 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from reference_engine.probe import PHASES
from stepgap.environment import host_summary
from stepgap.metrics import STEP_COLUMNS, request_table, summarize
from stepgap.report import build_report
from stepgap.runs import RunData, load_runs, save_group, save_run

GAP_MEDIAN_US = {"sync": 150.0, "overlap": 15.0}
DECODE_BUSY_US, PREFILL_BUSY_US = 2000.0, 5000.0
# Share of a gap the host spends in each phase (the rest is "other"), as in sync CPU runs.
GAP_PHASE_SHARE = {"postprocess": 0.2, "output": 0.1, "schedule": 0.05, "prepare": 0.15}
GAP_PHASE_SHARE |= {"launch": 0.1, "wait": 0.3}


class _Request:
    """What `metrics.request_table` reads of an engine request."""

    def __init__(self, request_id: int, prompt_len: int, max_tokens: int) -> None:
        self.request_id, self.arrival_s = request_id, 0.0
        self.prompt, self.output = [0] * prompt_len, []
        self.token_times_s, self.margins = [], []
        self.params = type("Params", (), {"max_tokens": max_tokens, "temperature": 0.0})()
        self.finish_reason, self.discarded = None, 0


class _Output:
    def __init__(self, requests: list[_Request]) -> None:
        self.requests = requests


def _schedule(steps: int, concurrency: int, output_len: int) -> tuple[list[str], list[list]]:
    """Continuous batching: kinds per step and the requests each step produced a token for."""
    kinds, served, slots, requests = [], [], [], []
    while len(kinds) < steps:
        if len(slots) < concurrency:  # free slots: admit new requests with one prefill step
            new = [
                _Request(len(requests) + i, 64 + (len(requests) + i) % 448, output_len)
                for i in range(concurrency - len(slots))
            ]
            requests += new
            slots += new
            kinds.append("prefill")
            served.append(new)
        else:
            kinds.append("decode")
            served.append(list(slots))
        for request in served[-1]:
            request.output.append(len(request.output) % 32000)
        slots = [r for r in slots if len(r.output) < output_len]
    return kinds, served


def synthesize(mode: str, steps: int, concurrency: int, output_len: int, seed: int) -> RunData:
    """One run of `steps` steps in `mode`, in the tables `stepgap run` saves."""
    rng = np.random.default_rng(seed)
    kinds, served = _schedule(steps, concurrency, output_len)
    is_prefill = np.array([k == "prefill" for k in kinds])
    busy = np.where(is_prefill, PREFILL_BUSY_US, DECODE_BUSY_US) * rng.normal(1, 0.03, steps)
    gaps = GAP_MEDIAN_US[mode] * rng.lognormal(0.0, 0.35, steps)
    gaps[rng.random(steps) < 0.01] *= 10
    gaps[0] = 0.0
    start = np.cumsum(gaps + np.concatenate([[0.0], busy[:-1]]))
    end = start + busy
    table = pd.DataFrame({"step": np.arange(steps), "kind": kinds})
    table["batch_size"] = [len(s) for s in served]
    table["num_tokens"] = np.where(is_prefill, table.batch_size * 256, table.batch_size)
    table["device_start_us"], table["device_end_us"] = start, end
    table["busy_us"] = busy
    table["gap_before_us"] = np.concatenate([[np.nan], start[1:] - end[:-1]])
    table["after_idle"] = False
    phase_us = {p: gaps * GAP_PHASE_SHARE[p] for p in PHASES}
    phase_us["wait"] = phase_us["wait"] + busy  # the host waits out the step as well
    for phase in PHASES:
        table[f"host_{phase}_us"] = phase_us[phase]
        table[f"gap_{phase}_us"] = np.where(table.step == 0, np.nan, gaps * GAP_PHASE_SHARE[phase])
    table["gap_other_us"] = np.where(table.step == 0, np.nan, gaps * 0.1)
    # Host phases laid end to end: the gap's phases, then wait during the step.
    durations = np.stack([phase_us[p] for p in PHASES], axis=1)
    phase_end = (end + 1.0)[:, None] - np.cumsum(durations[:, ::-1], axis=1)[:, ::-1]
    phases = pd.DataFrame(
        {
            "step": np.repeat(table.step.to_numpy(), len(PHASES)),
            "phase": np.tile(PHASES, steps),
            "start_us": (phase_end - durations).ravel(),
            "end_us": phase_end.ravel(),
        }
    )
    visible_s = (end + 5.0) / 1e6  # tokens reach the host just after their step ends
    for step, requests in enumerate(served):
        for request in requests:
            request.token_times_s.append(float(visible_s[step]))
            request.margins.append(float(rng.random()))
    requests = [r for group in served for r in group]
    requests = list({r.request_id: r for r in requests}.values())
    for request in requests:
        request.finish_reason = type("Reason", (), {"value": "length"})()
    request_frame = request_table(_Output(requests))
    tokens = {r.request_id: r.output for r in requests}
    times = {r.request_id: r.token_times_s for r in requests}
    wall_s = float(visible_s[-1])
    summary = summarize(table[STEP_COLUMNS], request_frame, times, tokens, wall_s)
    meta = {
        "name": f"synthetic-{mode}",
        "mode": mode,
        "source": "benchmarks/report_bench.py (synthetic)",
        "complete": True,
        "environment": {"device": {"kind": "synthetic", "name": "synthetic"}},
        "workload": {"label": f"synthetic-{steps}-steps", "model": "none"},
        "summary": summary,
        "origin_host_us": 0.0,
    }
    margins = {r.request_id: r.margins for r in requests}
    return RunData(meta, table[STEP_COLUMNS], request_frame, tokens, margins, times, phases)


def _median_seconds(function, reps: int) -> float:
    seconds = []
    for _ in range(reps):
        began = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def _cli_seconds(path: Path, out: Path, cores: list[int]) -> float:
    stepgap = shutil.which("stepgap") or "stepgap"
    command = [stepgap, "report", str(path), "-o", str(out)]
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, preexec_fn=_pin(cores))
    return time.perf_counter() - began


def _pin(cores: list[int]):
    return lambda: os.sched_setaffinity(0, cores)


def _machine() -> str:
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("numpy", "pandas", "matplotlib")
    )
    return f"{host_summary()}; {versions}; stepgap {metadata.version('stepgap')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output-len", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2, help="CPUs to pin the timing to")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the synthetic runs and reports here")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    work = Path(args.keep or tempfile.mkdtemp(prefix="report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    sync = synthesize("sync", args.steps, args.concurrency, args.output_len, seed=1)
    overlap = synthesize("overlap", args.steps, args.concurrency, args.output_len, seed=2)
    save_run(sync, work / "one", force=True)
    save_group([sync, overlap], work / "pair", force=True)
    made = time.perf_counter() - began
    sizes = sum(f.stat().st_size for f in (work / "one").iterdir()) / 1e6
    print(
        f"synthesized in {made:.1f} s: {args.steps:,} steps per run, "
        f"{len(sync.requests):,} requests, {sync.summary['output_tokens']:,} tokens, "
        f"{len(sync.phases):,} phase spans; one run is {sizes:.0f} MB on disk"
    )
    os.sched_setaffinity(0, cores)
    rows = []
    for case in ("one", "pair"):
        path, out = work / case, work / f"{case}.html"
        runs: list[RunData] = []

        def load(path: Path = path, runs: list[RunData] = runs) -> None:
            runs[:] = load_runs(path)

        load_med = _median_seconds(load, args.reps)
        build_med = _median_seconds(lambda out=out, runs=runs: build_report(runs, out), args.reps)
        cli = min(_cli_seconds(path, out, cores) for _ in range(args.reps))
        rows.append((case, load_med, build_med, load_med + build_med, cli, out))
    print(f"\nmachine: {_machine()}")
    print(f"pinned to CPUs {cores}; median of {args.reps} (command: best of {args.reps})\n")
    header = (
        "runs",
        "steps each",
        "load s",
        "build s",
        "load+build s",
        "`stepgap report` s",
        "HTML MB",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for case, load_s, build_s, total, cli, out in rows:
        label = "1 (sync)" if case == "one" else "2 (sync + overlap)"
        cells = (
            label,
            f"{args.steps:,}",
            f"{load_s:.2f}",
            f"{build_s:.2f}",
            f"{total:.2f}",
            f"{cli:.2f}",
            f"{out.stat().st_size / 1e6:.2f}",
        )
        print("| " + " | ".join(cells) + " |")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"limit_s": 10.0, "worst_command_s": round(max(r[4] for r in rows), 2)}))


if __name__ == "__main__":
    sys.exit(main())
