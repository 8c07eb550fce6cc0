#!/usr/bin/env python
"""`stepgap verify` on a GPU in one go: false alarms on the clean engine under jitter, and
the planted-fault table (caught per jitter level, first check), bf16 with CUDA graphs.

    python scripts/gpu_verify.py                    # CUDA; results under $OUT
    python scripts/gpu_verify.py --device cpu       # the same on CPU, for testing the script

Writes $OUT/verdict.json (schema stepgap-verify/1, with the fault table under "faults") and
$OUT/gpu_verify.txt (the printed table), and prints the table with machine and versions.
Exit 0 when the clean engine passed every check and every fault was caught. About
1-2 minutes on one H100 with the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from reference_engine.faults import FAULT_INFO, Fault
from reference_engine.jitter import JITTER_LEVELS, jitter_level
from stepgap import environment
from stepgap.verify.cases import FAMILIES, WORKLOADS
from stepgap.verify.runner import FaultTable, Verifier, VerifyConfig, VerifyResult, fault_table
from stepgap.verify.runner import verify as run_verify
from stepgap.verify.verdict import build_verdict, write_verdict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default $OUT)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per case for the faults")
    parser.add_argument("--clean-seeds", type=int, default=4, help="seeds for the clean runs")
    parser.add_argument("--jitter", default="light", choices=tuple(JITTER_LEVELS))
    parser.add_argument("--family", action="append", default=None, choices=FAMILIES)
    parser.add_argument("--workload", action="append", default=None, choices=tuple(WORKLOADS))
    parser.add_argument("--fault", action="append", default=None, choices=[f.value for f in Fault])
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs")
    parser.add_argument("--margin-tolerance", type=float, default=0.0)
    parser.add_argument(
        "--budget-s", type=float, default=150.0, help="start no new fault after this many s"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda asked for, but no CUDA GPU is available", file=sys.stderr)
        return 2
    out = args.out or Path(os.environ.get("OUT") or "gpu_verify_out")
    config = VerifyConfig(
        families=tuple(args.family or FAMILIES),
        workloads=tuple(args.workload or WORKLOADS),
        seeds=tuple(range(args.seeds)),
        jitter=jitter_level(args.jitter),
        device=args.device,
        cuda_graphs=not args.eager,
        margin_tolerance=args.margin_tolerance,
    )
    faults = [Fault(f) for f in args.fault] if args.fault else list(Fault)
    started = time.perf_counter()
    verifier = Verifier(config.device, config.cuda_graphs, config.margin_tolerance)
    skipped = []
    try:
        clean = run_verify(
            dataclasses.replace(config, seeds=tuple(range(args.clean_seeds))), _progress, verifier
        )
        rows = {}
        for fault in faults:  # one fault at a time, so the time budget can stop in between
            if time.perf_counter() - started > args.budget_s:
                skipped.append(fault)
                continue
            rows |= fault_table(config, [fault], _progress, verifier, clean=clean).rows
    finally:
        verifier.close()
    table = FaultTable(clean, rows)
    wall_s = time.perf_counter() - started
    env = environment.collect(verifier.device_info)
    verdict = build_verdict(clean, table, env)
    verdict["skipped_faults"] = [str(f) for f in skipped]
    text = render(config, clean, table, env, wall_s)
    if skipped:
        text += f"NOT RUN (time budget {args.budget_s:.0f} s): {', '.join(map(str, skipped))}\n"
    out.mkdir(parents=True, exist_ok=True)
    write_verdict(verdict, out / "verdict.json", force=True)
    (out / "gpu_verify.txt").write_text(text)
    print(text, end="")
    print(f"wrote {out / 'verdict.json'} and {out / 'gpu_verify.txt'}")
    return 0 if verdict["passed"] and not skipped else 1


_STARTED = time.perf_counter()


def _progress(label: str, done: int, total: int) -> None:
    if done == total:
        elapsed = time.perf_counter() - _STARTED
        print(f"  [{elapsed:6.1f} s] {label}: {total} runs done", file=sys.stderr, flush=True)


def render(
    config: VerifyConfig, clean: VerifyResult, table: FaultTable, env: dict, wall_s: float
) -> str:
    device = env.get("device", {})
    lines = [
        f"machine: {device.get('name')} ({device.get('kind')}, {device.get('dtype')}, "
        f"CUDA graphs captured: {device.get('cuda_graphs_captured')}); driver "
        f"{env.get('driver')}; torch {env.get('torch')} (CUDA {env.get('cuda')}); "
        f"python {env.get('python')}; git {env.get('git_revision')}",
        f"cases: families {', '.join(config.families)} x workloads "
        f"{', '.join(config.workloads)}; fault runs: {len(config.seeds)} seed(s) each; "
        f"jitter {config.jitter_label}; wall {wall_s:.0f} s",
        "",
        f"clean engine, jitter {clean.config.jitter_label}: {len(clean.cases)} runs, "
        f"{sum(not c.passed for c in clean.cases)} false alarm(s)",
    ]
    first = clean.first_failure()
    if first is not None:
        case, finding = first
        lines.append(f"  first: {case.case.label()}: {finding.check} at {finding.where()}")
        lines.append(f"  diagnosis: {finding.diagnosis}")
    levels = list(next(iter(table.rows.values()))) if table.rows else []
    header = ["fault", "race", *[f"jitter {level}" for level in levels], "first check"]
    rows = [header]
    for fault, by_level in table.rows.items():
        counts = [f"{sum(not c.passed for c in r.cases)}/{len(r.cases)}" for r in by_level.values()]
        firsts = first_checks_text(list(by_level.values())[-1])
        rows.append([str(fault), "yes" if FAULT_INFO[fault].race else "no", *counts, firsts])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines.append("")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    caught = sum(table.caught(f) for f in table.rows)
    lines.append(f"\nfaults caught: {caught}/{len(table.rows)}")
    return "\n".join(lines) + "\n"


def first_checks_text(result: VerifyResult) -> str:
    counts = result.first_checks()
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common()) or "-"


if __name__ == "__main__":
    sys.exit(main())
