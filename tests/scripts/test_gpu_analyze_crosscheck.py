"""scripts/gpu_analyze_crosscheck.py on CPU: its device truth, alignment and comparison, fed
a CPU run and the trace a GPU profiler would have recorded of it (built here from the
run's own clocks: each step's ops sit exactly at its timer marks, plus a known offset)."""

import gzip
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app

CLOCK_OFFSET_US = 7_000_000.0  # the profiler's clock is not the probe's
LATE_START_US = 0.75  # each step's first op starts this long after its start mark


@pytest.fixture(scope="module")
def both_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "both"
    result = CliRunner().invoke(
        app, ["run", "--device", "cpu", "--num-requests", "16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


class Trace:
    """Kineto-shaped events: host ranges, runtime calls with correlation ids, device ops."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, cat: str, name: str, ts: float, dur: float, tid: int, **args) -> None:
        event = {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": tid, "ts": ts}
        self.events.append(event | {"dur": dur, "args": args})

    def launch(self, at: float, start: float, end: float, cat: str) -> None:
        correlation = len(self.events) + 1
        self.add("cuda_runtime", "cudaGraphLaunch", at, 0.05, tid=10, correlation=correlation)
        self.add(cat, f"op-{correlation}", start, end - start, tid=7, correlation=correlation)

    def write(self, path: Path) -> None:
        with gzip.open(path, "wt") as file:
            json.dump({"traceEvents": self.events}, file)


def profiled_copy(run_dir: Path, target: Path, window: tuple[int, int]) -> None:
    """The run with the trace of steps `window`: host phase ranges as record_function shows
    them (a constant profiler cost each); each launched step as a copy kernel starting
    LATE_START_US after its start mark, a model kernel, and a copy ending at its end mark."""
    shutil.copytree(run_dir, target)
    run = stepgap.load_run(target)
    origin = run.meta["origin_host_us"] + CLOCK_OFFSET_US
    steps, phases, trace = run.steps.set_index("step"), run.phases, Trace()
    begin_us = phases.start_us[phases.step == window[0]].min()
    end_us = phases.end_us[phases.step == window[1]].max()
    inside = phases[(phases.start_us >= begin_us) & (phases.end_us <= end_us)]
    for span in inside[inside.phase != "idle"].itertuples():
        start = span.start_us + CLOCK_OFFSET_US + 0.4
        trace.add(
            "user_annotation",
            f"stepgap/{span.phase}",
            start,
            span.end_us - span.start_us - 0.8,
            tid=10,
        )
        if span.phase == "launch":
            step = steps.loc[span.step]
            begin, end = step.device_start_us + origin, step.device_end_us + origin
            trace.launch(start + 0.1, begin + LATE_START_US, begin + 1.0, "kernel")
            trace.launch(start + 0.2, begin + 1.5, end - 1.5, "kernel")
            trace.launch(start + 0.3, end - 1.0, end, "gpu_memcpy")
    trace.write(target / "trace.json.gz")
    meta = json.loads((target / "run.json").read_text())
    meta["profile_window"] = list(window)
    (target / "run.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("mode", ["sync", "overlap"])
def test_truth_from_the_trace_agrees_with_the_run_step_by_step(
    both_run, tmp_path, mode, repo_script
):
    script = repo_script("scripts/gpu_analyze_crosscheck.py")
    profiled_copy(both_run / mode, tmp_path / mode, (8, 30))
    result, pairs = script.check_mode(tmp_path / mode)
    difference = result["gap_difference_abs_us"]
    assert difference["n"] >= 15
    # the first op starts LATE_START_US after the start mark: the engine gap is that short
    assert difference["p50"] == pytest.approx(LATE_START_US, abs=1e-6)
    assert difference["max"] == pytest.approx(LATE_START_US, abs=1e-6)
    assert result["gap_difference_signed_median_us"] == pytest.approx(-LATE_START_US, abs=1e-6)
    # boundary: last kernel of N (1.5 µs before its end mark) -> first kernel of N+1
    decode = pairs[pairs.run_kind == "decode"].dropna(subset=["true_gap_us"])
    assert (decode.boundary_us - decode.true_gap_us).abs().max() == pytest.approx(1.5, abs=1e-6)
    assert script.report([result], median_limit_us=1.0, p90_limit_us=1.0)
    assert not script.report([result], median_limit_us=0.5, p90_limit_us=5.0)


def test_a_run_without_a_trace_cannot_be_cross_checked(both_run, repo_script):
    script = repo_script("scripts/gpu_analyze_crosscheck.py")
    with pytest.raises(script.CrosscheckError, match="no trace"):
        script.check_mode(both_run / "sync")
