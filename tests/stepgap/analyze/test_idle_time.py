"""Total idle time from `stepgap analyze` equals the idle time of the trace's device
timeline computed here independently: the span minus the union of all device intervals.

On a real third-party model's decode loop (a transformers Llama, profiled on the H100 by
scripts/make_hf_trace.py: tests/data/analyze/hf_llama_decode.trace.json.gz, when present)
and on the benchmark's synthetic Kineto trace, whose generator knows the true gaps.
"""

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from stepgap.analyze import analyze_traces

from .conftest import HF_FIXTURE

ROOT = Path(__file__).resolve().parents[3]
DEVICE_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}


def independent_idle_us(path: Path, first_start: float, last_end: float) -> float:
    """Idle µs in [first_start, last_end] (trace-relative): plain json, intervals merged."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        events = json.load(handle)["traceEvents"]
    timed = [
        e
        for e in events
        if "ts" in e
        and e.get("ph") == "X"
        and e.get("cat")
        in {"kernel", "gpu_memcpy", "gpu_memset", "cuda_runtime", "cuda_driver", "user_annotation"}
    ]
    origin = min(e["ts"] for e in timed)  # the analysis's time zero: its first event
    intervals = sorted(
        (e["ts"] - origin, e["ts"] - origin + e["dur"])
        for e in events
        if e.get("ph") == "X" and e.get("cat") in DEVICE_CATEGORIES
    )
    busy, cursor = 0.0, first_start
    for start, end in intervals:
        start, end = max(start, cursor), min(end, last_end)
        if end > start:
            busy += end - start
            cursor = end
    return (last_end - first_start) - busy


def check_idle(path: Path, **options) -> None:
    steps = analyze_traces([path], **options).steps
    assert len(steps) > 1
    first, last = steps.device_start_us.min(), steps.device_end_us.max()
    measured = steps.gap_before_us.sum() + steps.idle_inside_us.sum()
    # Kineto rounds timestamps to ns: sums over thousands of intervals differ in the last ns.
    expected = independent_idle_us(path, first, last)
    assert measured == pytest.approx(expected, rel=1e-7, abs=1e-3 * len(steps))


@pytest.mark.skipif(not HF_FIXTURE.exists(), reason="the H100 trace is not committed yet")
def test_third_party_decode_loop_idle_time():
    check_idle(HF_FIXTURE)
    steps = analyze_traces([HF_FIXTURE]).steps
    assert steps.range_name.str.match(r"ProfilerStep#\d+").all()
    assert (steps.kernels > 0).all() and (steps.memcpys > 0).all()  # tokens to the host


def _bench():
    spec = importlib.util.spec_from_file_location(
        "analyze_bench", ROOT / "benchmarks" / "analyze_bench.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("every", [1, 7])
def test_synthetic_decode_loop_matches_its_generator(tmp_path, every):
    bench = _bench()
    path = tmp_path / "synthetic.json.gz"
    truth = bench.generate(path, events=20_000, kernels_per_step=20, profiler_step_every=every)
    check_idle(path)
    steps = analyze_traces([path]).steps  # the vLLM step ranges name the steps
    starts, ends = truth.step_starts_ns, truth.step_ends_ns
    assert len(steps) == len(starts)
    gaps = [(s - e) / 1e3 for s, e in zip(starts[1:], ends[:-1], strict=True)]
    assert list(steps.gap_before_us.iloc[1:]) == pytest.approx(gaps, abs=1e-6)
    assert steps.busy_us.sum() - steps.idle_inside_us.sum() == pytest.approx(
        truth.busy_union_ns / 1e3, abs=1e-6 * len(steps)
    )
