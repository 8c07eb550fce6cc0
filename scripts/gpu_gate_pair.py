#!/usr/bin/env python
"""`stepgap gate` on a GPU in one go: equal runs must pass the regression rules, a planted
gap regression must fail them.

    PYTHONPATH=. python scripts/gpu_gate_pair.py                     # CUDA; results in $OUT
    PYTHONPATH=. python scripts/gpu_gate_pair.py --device cpu --workload smoke   # to test it

Runs the workload under sync and overlap `--repeats` times (the same build, back to back),
then gates every repeat against the first with the rules of docs/github-actions-gate.yml
(tokens identical, overlap/sync ratios, gap / TPOT / throughput against the baseline), and
gates a copy of the last repeat with every decode gap made 1.5x as long, which must fail.
Prints one table with machine and versions; writes the runs, and the JSON, JUnit and
Markdown verdicts, under $OUT (or --out). Exit 0 when every equal pair passed and the
planted regression failed. About 1-2 minutes on one H100 with the defaults.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import textwrap
from pathlib import Path

import torch
import yaml

from stepgap.gate.evaluate import GateReport, run_gate
from stepgap.gate.output import junit_xml, markdown, report_json
from stepgap.metrics import summarize
from stepgap.runner import RunConfig, run_workload
from stepgap.runs import load_run, save_group, save_run
from stepgap.workloads import load_workload

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "docs" / "github-actions-gate.yml"


def workflow_rules() -> str:
    """The rules the documented GitHub Actions workflow writes, exactly."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["gate"]["steps"]
    (script,) = [s["run"] for s in steps if "gpu-gates.toml\" <<'EOF'" in s.get("run", "")]
    return textwrap.dedent(script.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0])


def plant_larger_gaps(group: Path, factor: float) -> None:
    """Every decode gap of every mode `factor` times as long; later steps shifted."""
    for mode_dir in sorted(p for p in group.iterdir() if (p / "run.json").is_file()):
        run = load_run(mode_dir)
        steps = run.steps.copy()
        decode = (steps.kind == "decode") & steps.gap_before_us.notna()
        extra = (steps.gap_before_us * (factor - 1.0)).where(decode, 0.0)
        shift = extra.cumsum()
        steps["gap_before_us"] += extra.where(decode)
        steps["device_start_us"] += shift
        steps["device_end_us"] += shift
        run.steps = steps
        wall_s = float(run.summary["wall_s"]) + float(shift.iloc[-1]) / 1e6
        run.meta["summary"] = summarize(
            steps, run.requests, run.token_times, run.tokens, wall_s, run.summary["warmup_steps"]
        )
        save_run(run, mode_dir, force=True)


def save_verdicts(report: GateReport, out: Path, name: str) -> None:
    import json

    (out / f"{name}.json").write_text(json.dumps(report_json(report), indent=2, default=str))
    (out / f"{name}.junit.xml").write_text(junit_xml(report))
    (out / f"{name}.md").write_text(markdown(report))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workload", default="glm-4.5-air-tp8")
    parser.add_argument("--num-layers", type=int, default=4, help="model override; 0: preset")
    parser.add_argument("--output-len", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gate-pair-out")))
    args = parser.parse_args()

    workload = load_workload(args.workload)
    overrides = dict(workload.model_overrides)
    if args.num_layers:
        overrides["num_layers"] = args.num_layers
    workload = workload.with_overrides(output_len=args.output_len, model_overrides=overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    rules = args.out / "gpu-gates.toml"
    rules.write_text(workflow_rules())

    groups = []
    for i in range(1, args.repeats + 1):
        if args.device == "cuda":
            print(f"run {i}: {torch.cuda.memory_allocated() / 2**30:.2f} GiB allocated before")
        runs = run_workload(RunConfig(workload=workload, device=args.device))
        groups.append(save_group(runs, args.out / f"run-{i}", force=True))
    planted = args.out / "planted-gaps-x1.5"
    shutil.rmtree(planted, ignore_errors=True)
    shutil.copytree(groups[-1], planted)
    plant_larger_gaps(planted, 1.5)

    env = load_run(groups[0] / "sync").meta["environment"]
    print(
        f"device: {env['device'].get('name')}  driver: {env.get('driver')}  torch "
        f"{torch.__version__}  cuda {torch.version.cuda}  python {platform.python_version()}"
    )
    print(
        f"workload: {workload.label}, model overrides {overrides}, output_len "
        f"{workload.output_len}; rules: {WORKFLOW.relative_to(REPO)}"
    )
    header = (
        f"{'pair':<28} {'check':<52} {'value':>10} {'baseline':>10} {'change':>8} "
        f"{'noise interval':>18}  status"
    )
    print(header)
    print("-" * len(header))
    ok = True
    pairs = [(f"run-{i} vs run-1", g) for i, g in enumerate(groups[1:], 2)]
    pairs.append(("planted x1.5 vs run-1", planted))
    for label, group in pairs:
        report = run_gate(group, rules, groups[0])
        save_verdicts(report, args.out, label.replace(" ", "_"))
        planted_pair = label.startswith("planted")
        gap_checks = [c for c in report.checks if c.rule.check.startswith("gap_p50_us")]
        # Equal runs must pass every rule; the planted run must fail the gap regression.
        as_expected = all(not c.passed for c in gap_checks) if planted_pair else report.passed
        ok &= as_expected
        for c in report.checks:
            change = "" if c.change_pct is None else f"{c.change_pct:+.1f}%"
            noise = c.noise.describe() if c.noise else ""
            base = "" if c.baseline_value is None else f"{c.baseline_value:.4g}"
            value = c.value if isinstance(c.value, bool) else f"{c.value:.4g}"
            print(
                f"{label:<28} {c.title[:52]:<52} {value!s:>10} {base:>10} {change:>8} "
                f"{noise:>18}  {c.status}"
            )
        verdict = "PASSED" if report.passed else "FAILED"
        wanted = "gap checks fail" if planted_pair else "pass"
        print(
            f"{label:<28} gate {verdict}; expected: {wanted}; {'ok' if as_expected else 'NOT OK'}"
        )
    print(f"overall: {'as expected' if ok else 'NOT as expected'}; files in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
