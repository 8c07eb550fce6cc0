"""scripts/gpu_analyze_attribution.py on CPU: a real `stepgap run --mode sync --profile` on
the CPU device, and the trace a GPU profiler would have recorded of it — the run's own host
phases as `stepgap/<phase>` ranges, each step a CUDA-graph replay over the step's device
interval (on the host clock by the run's origin marker), the host blocked in
cudaEventSynchronize through its `wait` phase. A CPU profile holds no device activity, so
the device side is built here from the run's own clocks, mapped to the host clock as the
run's own gap attribution maps them."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app
from stepgap.metrics import host_clock_offset_us

from .conftest import KinetoTrace

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = "scripts/gpu_analyze_attribution.py"
CLOCK_OFFSET_US = 7_000_000.0  # the profiler's clock is not the probe's
RANGE_COST_US = 0.4  # record_function's cost at each end of a range
WAKE_US = 2.0  # from a step's end on the device to the host returning from its wait


@pytest.fixture(scope="module")
def sync_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sync"
    args = ["run", "--device", "cpu", "--num-requests", "16", "--mode", "sync", "--profile"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def gpu_like(run_dir: Path, target: Path) -> Path:
    """A copy of the run whose trace.json.gz is the one a GPU profile would hold."""
    shutil.copytree(run_dir, target)
    run = stepgap.load_run(target)
    first, last = run.meta["profile_window"]
    # device time -> host time, per step, as the run's own gap attribution maps it (a CPU
    # run's "device" is a worker thread: its clock and the host's drift apart under load)
    # The estimate is bounded by the host's wake-up after a step's end; a real host wakes a
    # little after the device finished, so the device ends WAKE_US before the wait does.
    offsets = host_clock_offset_us(run.steps, run.phases, run.meta["origin_host_us"])
    steps = run.steps.assign(offset_us=offsets + CLOCK_OFFSET_US - WAKE_US).set_index("step")
    trace = KinetoTrace()
    for span in run.phases.itertuples():
        if span.phase in ("idle", "profiler") or not first <= span.step <= last:
            continue
        start, end = span.start_us + CLOCK_OFFSET_US, span.end_us + CLOCK_OFFSET_US
        trace.range(f"stepgap/{span.phase}", start + RANGE_COST_US, end - start - 2 * RANGE_COST_US)
        if span.phase == "launch":
            step = steps.loc[span.step]
            begin, finish = (
                step.device_start_us + step.offset_us,
                step.device_end_us + step.offset_us,
            )
            graph(trace, start + 1.0, begin, finish)
            trace.call("cudaEventRecord", end - 2.0, dur=1.0)
        if span.phase == "wait":
            trace.call("cudaEventSynchronize", start + 1.0, dur=end - start - 2.0)
    trace.write(target / "trace.json.gz")
    return target


def graph(trace: KinetoTrace, at: float, begin: float, end: float) -> None:
    """A cudaGraphLaunch at `at` replaying three kernels over [begin, end]."""
    correlation = trace.call("cudaGraphLaunch", at, dur=3.0)
    for start, stop in ((begin, begin + 1.0), (begin + 1.5, end - 1.5), (end - 1.0, end)):
        trace.events.append(
            {
                "ph": "X",
                "cat": "kernel",
                "name": f"graph-kernel-{correlation}",
                "pid": 0,
                "tid": 7,
                "ts": start,
                "dur": stop - start,
                "args": {"device": 0, "context": 1, "stream": 7, "correlation": correlation},
            }
        )


def test_gaps_follow_the_wait_and_the_phases_after_it_as_the_run_says(
    sync_run, tmp_path, repo_script
):
    module = repo_script(SCRIPT)
    result, pairs = module.compare(gpu_like(sync_run, tmp_path / "gpu"))
    assert module.judge(result, bound_us=5.0, bound_share=0.1, min_wait_share=0.9), result
    assert result["matched_gaps"] >= 20 and result["wait_share"] == 1.0
    assert result["waits"] == {"cudaEventSynchronize": result["matched_gaps"]}
    assert result["phases"]["postprocess"]["trace_total_us"] > 0
    assert set(pairs.phase) >= {"wait", "postprocess", "output", "schedule", "prepare", "launch"}


def test_a_disagreeing_phase_table_fails_the_check(sync_run, tmp_path, repo_script):
    module = repo_script(SCRIPT)
    result, _ = module.compare(gpu_like(sync_run, tmp_path / "gpu"))
    assert not module.judge(result, bound_us=-1.0, bound_share=0.0, min_wait_share=0.9)
    assert result["reasons"] and result["passed"] is False


def test_the_command_line_exits_by_the_verdict(sync_run, tmp_path):
    import subprocess

    target = gpu_like(sync_run, tmp_path / "gpu")
    out = tmp_path / "attribution.json"
    command = [sys.executable, str(ROOT / SCRIPT), str(target)]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out.read_text())["passed"] is True
    bare = subprocess.run([*command[:2], str(sync_run)], capture_output=True, text=True)
    assert bare.returncode == 2  # a CPU trace: no device work to attribute
