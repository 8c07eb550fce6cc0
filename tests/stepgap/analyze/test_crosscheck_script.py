"""scripts/gpu_analyze_crosscheck.py on CPU: its alignment and comparison, fed a CPU run and
the trace a GPU profiler would have recorded of it (built here from the run's own clocks)."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

import stepgap

from .conftest import KinetoTrace

ROOT = Path(__file__).resolve().parents[3]
CLOCK_OFFSET_US = 7_000_000.0  # the profiler's clock is not the probe's


def _script():
    path = ROOT / "scripts" / "gpu_analyze_crosscheck.py"
    spec = importlib.util.spec_from_file_location("gpu_analyze_crosscheck", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def profiled_copy(run_dir: Path, target: Path, window: tuple[int, int]) -> int:
    """The run with the trace of the time steps `window` took: host phase ranges as
    record_function shows them (a constant profiler cost each), and each launched step's
    device work as an H2D copy at its CUDA-event start, a kernel, and a D2H copy ending at
    its CUDA-event end. Returns the first step launched in the trace."""
    shutil.copytree(run_dir, target)
    run = stepgap.load_run(target)
    origin = run.meta["origin_host_us"] + CLOCK_OFFSET_US
    steps = run.steps.set_index("step")
    trace = KinetoTrace()
    phases = run.phases
    begin_us = phases.start_us[phases.step == window[0]].min()
    end_us = phases.end_us[phases.step == window[1]].max()
    inside = phases[(phases.start_us >= begin_us) & (phases.end_us <= end_us)]
    for span in inside.itertuples():
        if span.phase == "idle":
            continue
        start = span.start_us + CLOCK_OFFSET_US + 0.4
        trace.range(f"stepgap/{span.phase}", start, span.end_us - span.start_us - 0.8)
        if span.phase == "launch":
            step = steps.loc[span.step]
            begin, end = step.device_start_us + origin, step.device_end_us + origin
            trace.launch(start + 0.1, begin, begin + 1.0, "gpu_memcpy")
            trace.launch(start + 0.2, begin + 1.5, end - 1.5)
            trace.launch(start + 0.3, end - 1.0, end, "gpu_memcpy")
    trace.write(target / "trace.json.gz")
    meta = json.loads((target / "run.json").read_text())
    meta["profile_window"] = list(window)
    (target / "run.json").write_text(json.dumps(meta))
    return int(inside[inside.phase == "launch"].sort_values("start_us").step.iloc[0])


@pytest.mark.parametrize("mode", ["sync", "overlap"])
def test_the_trace_and_the_run_agree_step_by_step(both_run, tmp_path, mode):
    script = _script()
    first_launched = profiled_copy(both_run / mode, tmp_path / mode, (8, 30))
    result, pairs = script.check_mode(tmp_path / mode)
    assert result["first_trace_step"] == first_launched and result["profile_window"] == [8, 30]
    plain = result["plain"]["gap"]
    assert plain["n"] >= 15 and plain["max_abs_us"] < 1e-6
    assert result["plain"]["busy"]["max_abs_us"] < 1e-6
    assert set(pairs.variant) == {"plain", "event_marks"}
    assert script.report([result], limit_us=5.0, gate="plain")
    assert not script.report([result], limit_us=-1.0, gate="plain")


def test_a_run_without_a_trace_cannot_be_cross_checked(both_run):
    script = _script()
    with pytest.raises(script.TraceError, match="no trace"):
        script.check_mode(both_run / "sync")
