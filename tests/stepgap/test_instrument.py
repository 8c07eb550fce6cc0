"""NVTX ranges: names, domain and nesting; and the same ranges in a profiler trace."""

import gzip
import json

import pytest
from typer.testing import CliRunner

import stepgap
from reference_engine import Engine, EngineConfig, model_config
from reference_engine.probe import PHASES
from stepgap.cli import app
from stepgap.instrument import DOMAIN, STEP_RANGE, NvtxProbe
from stepgap.metrics import gap_sample
from stepgap.mixes import random_mix


class FakeDomain:
    def __init__(self, log):
        self.log = log

    def get_event_attributes(self, message):
        return message

    def push_range(self, attrs):
        self.log.append(("push", attrs))

    def pop_range(self):
        self.log.append(("pop", None))


class FakeNvtx:
    def __init__(self):
        self.log, self.domains = [], []

    def get_domain(self, name):
        self.domains.append(name)
        return FakeDomain(self.log)


def test_phases_become_nested_nvtx_ranges_in_the_stepgap_domain():
    nvtx = FakeNvtx()
    probe = NvtxProbe(nvtx_module=nvtx)
    engine = Engine(EngineConfig(model_config("ernie-4.5-tiny"), 4, 64, device="cpu"), probe)
    engine.run(random_mix(1, 512, num_requests=6), "overlap")
    assert nvtx.domains == [DOMAIN]
    depth, names = 0, set()
    for kind, name in nvtx.log:
        if kind == "push":
            assert (depth == 0) == (name == STEP_RANGE)  # phases only inside a step range
            depth += 1
            names.add(name)
        else:
            depth -= 1
            assert depth >= 0
    assert depth == 0
    assert names == {STEP_RANGE, *(f"stepgap/{p}" for p in PHASES)}


def test_disabled_probe_emits_and_records_nothing():
    nvtx = FakeNvtx()
    probe = NvtxProbe(enabled=False, nvtx_module=nvtx)
    engine = Engine(EngineConfig(model_config("ernie-4.5-tiny"), 4, 64, device="cpu"), probe)
    engine.run(random_mix(1, 512, num_requests=4), "sync")
    assert nvtx.log == [] and probe.spans == []


def profiler_ranges(trace_path):
    with gzip.open(trace_path) as f:
        events = json.load(f)["traceEvents"]
    # Host-side ranges only; CUDA traces also project them onto the GPU timeline.
    return [
        e
        for e in events
        if e.get("ph") == "X"
        and e.get("cat") == "user_annotation"
        and str(e.get("name", "")).startswith("stepgap/")
    ]


def check_profiler_gaps_excluded(run):
    """Starting and stopping the profiler pause the host: those gaps are listed in run.json
    and left out of the gap statistics and of the idle fraction (recomputed here from
    steps.csv with plain arithmetic)."""
    steps = run.steps
    listed = [g for g in run.meta["excluded_gaps"] if g["reason"] == "profiler"]
    flagged = steps[steps.excluded == "profiler"]
    assert len(listed) == len(flagged) >= 1
    assert [g["step"] for g in listed] == flagged.step.tolist()
    assert steps.after_idle[steps.excluded != ""].all()
    sampled = set(gap_sample(steps, run.summary["warmup_steps"]).index)
    assert not sampled & set(flagged.index)
    span = steps.device_end_us.max() - steps.device_start_us.min()
    profiler_us = sum(g["gap_us"] for g in listed)
    expected = (steps.gap_before_us.sum() - profiler_us) / (span - profiler_us)
    assert run.summary["idle_fraction"] == pytest.approx(expected, rel=1e-9)
    assert run.summary["gap_profiler_us"] == pytest.approx(profiler_us)
    assert profiler_us > 0  # so leaving the transitions in would move the figure


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_profile_run_saves_a_trace_with_the_nested_ranges(tmp_path, device):
    out = tmp_path / "profiled"
    args = ["run", "--device", device, "--mode", "overlap", "--num-requests", "12"]
    result = CliRunner().invoke(app, [*args, "--profile", "--profile-steps", "10", "--out", out])
    assert result.exit_code == 0, result.output
    run = stepgap.load_run(out)
    assert run.trace_path is not None and run.meta["profile_window"][0] >= 0
    check_profiler_gaps_excluded(run)
    ranges = profiler_ranges(run.trace_path)
    steps = [e for e in ranges if e["name"] == STEP_RANGE]
    phases = [e for e in ranges if e["name"] != STEP_RANGE]
    assert len(steps) >= 10 and {e["name"] for e in phases} >= {"stepgap/launch", "stepgap/wait"}
    if device == "cuda":
        with gzip.open(run.trace_path) as f:
            kinds = {e.get("cat") for e in json.load(f)["traceEvents"]}
        assert "kernel" in kinds and "user_annotation" in kinds
    for phase in phases:  # every phase range lies inside a step range of the same thread
        assert any(
            s["tid"] == phase["tid"]
            and s["ts"] <= phase["ts"]
            and phase["ts"] + phase["dur"] <= s["ts"] + s["dur"] + 1
            for s in steps
        ), phase
