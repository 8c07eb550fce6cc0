"""How well `stepgap predict` foretells the overlap schedule, on the CPU reference engine.

For each workload and seed, runs the workload under both schedules (`run_workload`, the
library behind `stepgap run --mode both`; the order of the two alternates by seed so drift
favours neither), predicts the overlap run from the sync run, and compares. The floor is
measured once, beforehand, on three separate overlap runs (the `smoke` mix, seeds of its
own) that are not among the validated pairs: no figure of a validated overlap run enters
its own prediction. Prints a Markdown table (per workload: predicted and measured output
throughput and TPOT p50, their errors per seed and the spread across seeds, the measured
and predicted overlap/sync device busy ratio — a pair far off it was disturbed by other
work on the machine — and the load), the median and max |error| over all pairs, the same
without the model's CPU lock term (an ablation on the same pairs), and the sync replay's
self-check. `--committed DIR...` adds `--mode both` groups already on disk (the GPU runs
under reports/), predicted with the default floor.

    python benchmarks/predict_validation.py                # 6 workloads x 3 seeds, ~2 min
    python benchmarks/predict_validation.py --seeds 1 --only smoke-c8
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from stepgap.predict.floor import Floor, FloorSource, default_floor, floor_from_run
from stepgap.predict.prediction import SELF_CHECK_KEYS, Prediction, predict_overlap
from stepgap.predict.validate import MetricError, errors
from stepgap.runner import RunConfig, run_workload
from stepgap.runs import load_runs
from stepgap.workloads import Workload, load_workload

REPORTED = ("output_throughput", "median_tpot_ms")
ALSO = ("median_itl_ms", "median_ttft_ms", "gap_p50_us", "idle_fraction", "duration")


@dataclass(frozen=True)
class Case:
    """One validated workload: a preset and what is changed in it."""

    name: str
    preset: str
    changes: dict

    def workload(self, seed: int) -> Workload:
        return load_workload(self.preset).with_overrides(seed=seed, **self.changes)


CASES = (
    Case("smoke-c8", "smoke", {"num_requests": 96, "arrival": "all"}),
    Case("smoke-c2", "smoke", {"num_requests": 24, "concurrency": 2, "arrival": "all"}),
    Case(
        "smoke-c16-out64",
        "smoke",
        {"num_requests": 48, "concurrency": 16, "output_len": 64, "arrival": "all"},
    ),
    Case("smoke-poisson-eos", "smoke", {"num_requests": 64, "ignore_eos": False}),
    Case("glm-tiny-c4", "glm-4.5-air-tp8-scaled", {"num_requests": 8, "output_len": 128}),
    Case(
        "ernie-tiny-c16",
        "ernie-4.5-21b-a3b-tp4-scaled",
        {"num_requests": 48, "concurrency": 16, "input_len": 64, "output_len": 32},
    ),
)


@dataclass(frozen=True)
class PairResult:
    """One seed of one workload: the errors, and what tells a disturbed pair apart."""

    errors: dict[str, MetricError]
    busy_ratio_measured: float  # overlap / sync device busy, measured
    busy_ratio_predicted: float
    token_stops: int  # requests that stopped on a token (EOS): a step past it under overlap
    load: float  # 1-minute load average after the pair
    self_check: float  # max |sync replay / sync measured - 1| of SELF_CHECK_KEYS
    unlocked: dict[str, MetricError]  # the errors without the CPU lock term (ablation)


CALIBRATION_SEEDS = (1000, 1001, 1002)


def calibrate_floor() -> Floor:
    """The floor from overlap runs that no validated pair contains: the median of their
    median decode gaps (the CPU floor moves by tens of µs from run to run)."""
    workload = load_workload("smoke").with_overrides(num_requests=24, arrival="all")
    floors = []
    for seed in CALIBRATION_SEEDS:
        config = RunConfig(workload.with_overrides(seed=seed), modes=("overlap",), device="cpu")
        floors.append(floor_from_run(run_workload(config)[0]).value_us)
    where = (
        f"{len(floors)} separate smoke overlap runs (seeds {CALIBRATION_SEEDS[0]}-"
        f"{CALIBRATION_SEEDS[-1]}: {', '.join(f'{f:.1f}' for f in floors)} µs)"
    )
    return Floor(statistics.median(floors), FloorSource.MEASURED, where)


def validate(case: Case, seed: int, floor: Floor) -> PairResult:
    modes = ("sync", "overlap") if seed % 2 == 0 else ("overlap", "sync")
    runs = {r.mode: r for r in run_workload(RunConfig(case.workload(seed), modes, "cpu"))}
    sync, overlap = runs["sync"], runs["overlap"]
    prediction = predict_overlap(sync, floor)
    busy = sync.summary["busy_total_us"]
    return PairResult(
        {row.key: row for row in errors(prediction, overlap)},
        overlap.summary["busy_total_us"] / busy,
        prediction.predicted["busy_total_us"] / busy,
        int((sync.requests.finish_reason != "length").sum()),
        os.getloadavg()[0],
        self_check(prediction),
        {row.key: row for row in errors(predict_overlap(sync, floor, False), overlap)},
    )


def self_check(prediction: Prediction) -> float:
    """How far the sync replay is from the measured sync run (max over a few figures)."""
    return max(
        abs(prediction.sync_replay[key] / prediction.sync[key] - 1) for key in SELF_CHECK_KEYS
    )


def validate_committed(path: str) -> PairResult:
    """A committed `--mode both` group (e.g. reports/h200-*): the default (GPU) floor."""
    runs = {r.mode: r for r in load_runs(path, require_complete=True)}
    prediction = predict_overlap(runs["sync"], default_floor())
    busy = runs["sync"].summary["busy_total_us"]
    return PairResult(
        {row.key: row for row in errors(prediction, runs["overlap"])},
        runs["overlap"].summary["busy_total_us"] / busy,
        prediction.predicted["busy_total_us"] / busy,
        0,
        math.nan,
        self_check(prediction),
        {row.key: row for row in errors(prediction, runs["overlap"])},
    )


def header(args: argparse.Namespace, floor: Floor, seconds: float | None) -> list[str]:
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {load}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"stepgap commit {revision}{' (+ uncommitted changes)' if dirty.stdout else ''}",
        f"- command: python {' '.join(sys.argv)}",
        f"- seeds: {args.seeds} per workload; floor: {floor.value_us:.1f} µs, the median "
        f"of the median decode gaps of {floor.run}",
    ]
    if seconds is not None:
        lines.append(f"- wall time: {seconds:.0f} s")
    return lines


def pct(value: float) -> str:
    return f"{value:+.1%}"


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


Results = dict[str, list[PairResult]]


def table(results: Results) -> list[str]:
    lines = [
        "| workload | throughput predicted (tok/s) | measured | error per seed | spread "
        "| TPOT p50 predicted (ms) | measured | error per seed | spread "
        "| busy overlap/sync measured | predicted | token stops | load |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | --- | --- | ---: | --- |",
    ]
    for name, seeds in results.items():
        cells = [name]
        for key in REPORTED:
            rows = [s.errors[key] for s in seeds]
            errs = [r.relative_error for r in rows]
            cells += [
                number(statistics.median(r.predicted for r in rows)),
                number(statistics.median(r.measured for r in rows)),
                " / ".join(pct(e) for e in errs),
                f"{max(errs) - min(errs):.1%}",
            ]
        cells += [
            " / ".join(f"{s.busy_ratio_measured:.3f}" for s in seeds),
            " / ".join(f"{s.busy_ratio_predicted:.3f}" for s in seeds),
            str(sum(s.token_stops for s in seeds)),
            " / ".join("—" if math.isnan(s.load) else f"{s.load:.1f}" for s in seeds),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def checks(results: Results) -> list[str]:
    """The sync replay's self-check, and the measured overlap runs' gap p50 (the floor)."""
    pairs = [pair for seeds in results.values() for pair in seeds]
    gaps = [pair.errors["gap_p50_us"].measured for pair in pairs]
    worst = max(pair.self_check for pair in pairs)
    return [
        f"- self-check: the sync replay gives back each measured sync run's output throughput, "
        f"TPOT p50 and wall time within {worst:.2%} (worst pair)",
        f"- measured overlap runs' gap p50 (the floor, as each run saw it): "
        f"{min(gaps):.1f}-{max(gaps):.1f} µs",
    ]


def overall(results: Results) -> list[str]:
    lines = [
        "| figure | median error | median abs error | max abs error |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key in REPORTED + ALSO:
        lines.append(summary_row(results, key, lambda pair: pair.errors, ""))
    for key in REPORTED:
        label = " (model without the CPU lock term)"
        lines.append(summary_row(results, key, lambda pair: pair.unlocked, label))
    return lines


def summary_row(results: Results, key: str, pick, suffix: str) -> str:
    rows = [pick(pair)[key] for seeds in results.values() for pair in seeds]
    errs = [r.relative_error for r in rows if not math.isnan(r.relative_error)]
    absolute = [abs(e) for e in errs] or [math.nan]
    median = statistics.median(errs) if errs else math.nan
    return (
        f"| {rows[0].label}{suffix} | {pct(median)} | "
        f"{statistics.median(absolute):.1%} | {max(absolute):.1%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only this workload (repeatable)")
    parser.add_argument(
        "--committed", nargs="*", default=[], help="also check these committed both-mode groups"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    floor = calibrate_floor()
    cases = [c for c in CASES if not args.only or c.name in args.only]
    results = {c.name: [validate(c, seed, floor) for seed in range(args.seeds)] for c in cases}
    print("# `stepgap predict` against measured overlap runs: CPU reference engine\n")
    print("\n".join(header(args, floor, time.perf_counter() - started)) + "\n")
    print("\n".join(table(results)) + "\n")
    print("\n".join(overall(results)) + "\n")
    print("\n".join(checks(results)))
    if args.committed:
        committed = {path: [validate_committed(path)] for path in args.committed}
        print("\n## Committed GPU runs (default floor, 5 µs)\n")
        print("\n".join(table(committed)) + "\n")
        print("\n".join(overall(committed)[: 2 + len(REPORTED + ALSO)]) + "\n")
        print("\n".join(checks(committed)))


if __name__ == "__main__":
    main()
