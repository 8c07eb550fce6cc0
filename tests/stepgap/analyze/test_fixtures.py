"""Every fixture of issue 14's failures, and the real HF decode trace, against an independent
computation written here with plain `json` (numbers as `Decimal`, times as integer ns):

device ops belong to the step whose range contains their launching call (the calling
thread's own range first, else the latest-opened one of any thread); steps are taken in the
order they start on the device; a step's gap is the time from the latest end of the steps
before it to its start (never negative), its idle time the part of its interval after that
not covered by any device op; the total idle is the span minus the union of all device ops.
Every figure of `stepgap analyze` must match to 0.01 µs.
"""

import gzip
import json
import re
from decimal import Decimal

import pytest

from stepgap.analyze import StepRule, analyze_traces

from .conftest import DATA, FIXTURES, HF_FIXTURE

DEVICE = {"kernel", "gpu_memcpy", "gpu_memset"}
CALLS = {"cuda_runtime", "cuda_driver"}
TOLERANCE_US = 0.01


def ns(value) -> int:
    return int(Decimal(value) * 1000)


def events_of(path):
    with gzip.open(path, "rt") as handle:
        events = json.load(handle, parse_float=Decimal)["traceEvents"]
    return [e for e in events if e.get("ph") == "X"]


def union_ns(intervals, lo, hi) -> int:
    """Length of the union of `intervals` inside [lo, hi]."""
    covered, cursor = 0, lo
    for start, end in sorted(intervals):
        start, end = max(start, cursor), min(end, hi)
        if end > start:
            covered += end - start
            cursor = end
    return covered


def independent(path, step_pattern):
    """Per step (index in start order): gap, idle inside; and the trace's three totals."""
    events = events_of(path)
    steps = sorted(
        (e for e in events if e["cat"] == "user_annotation" and re.search(step_pattern, e["name"])),
        key=lambda e: ns(e["ts"]),
    )
    calls = {e["args"]["correlation"]: e for e in events if e["cat"] in CALLS}
    ops = [(ns(e["ts"]), ns(e["ts"]) + ns(e["dur"]), e) for e in events if e["cat"] in DEVICE]
    members = {}
    for start, end, op in ops:
        call = calls.get(op["args"]["correlation"])
        step = step_of(call, steps) if call else None
        if step is not None:
            members.setdefault(step, []).append((start, end))
    return measure({k: (min(v)[0], max(e for _, e in v)) for k, v in members.items()}, ops)


def step_of(call, steps):
    t = ns(call["ts"])
    inside = [i for i, s in enumerate(steps) if ns(s["ts"]) <= t < ns(s["ts"]) + ns(s["dur"])]
    own = [i for i in inside if steps[i]["tid"] == call["tid"]]
    return max(own or inside, key=lambda i: ns(steps[i]["ts"])) if inside else None


def measure(intervals, ops):
    busy = [(s, e) for s, e, _ in ops]
    reach, rows = None, {}
    for step in sorted(intervals, key=lambda k: (intervals[k][0], k)):
        start, end = intervals[step]
        gap = None if reach is None else max(0, start - reach)
        new_from = start if reach is None else max(start, reach)
        idle = max(0, end - new_from) - union_ns(busy, new_from, max(end, new_from))
        rows[step] = (gap, idle)
        reach = end if reach is None else max(reach, end)
    first = min(s for s, _ in intervals.values())
    last = max(e for _, e in intervals.values())
    between = sum(g for g, _ in rows.values() if g is not None)
    inside = sum(i for _, i in rows.values())
    total = (last - first) - union_ns(busy, first, last)
    return rows, {"between": between, "inside": inside, "total": total}


CASES = [(DATA / f"{name}.trace.json.gz", pattern) for name, pattern in FIXTURES.items()]
if HF_FIXTURE.exists():
    CASES.append((HF_FIXTURE, r"^ProfilerStep#\d+$"))


@pytest.mark.parametrize(("path", "pattern"), CASES, ids=lambda c: getattr(c, "stem", ""))
def test_every_figure_equals_the_independent_computation(path, pattern):
    result = analyze_traces([path])  # the default rules find the steps
    rows, totals = independent(path, pattern)
    steps = result.steps.set_index("step")
    assert sorted(steps.index) == sorted(rows)
    for step, (gap, idle) in rows.items():
        if gap is None:
            assert steps.gap_before_us[step] != steps.gap_before_us[step]  # NaN: the first
        else:
            assert steps.gap_before_us[step] == pytest.approx(gap / 1000, abs=TOLERANCE_US)
        assert steps.idle_inside_us[step] == pytest.approx(idle / 1000, abs=TOLERANCE_US)
    summary = result.summary
    assert summary["idle_between_steps_us"] == pytest.approx(totals["between"] / 1000, abs=0.01)
    assert summary["idle_inside_steps_us"] == pytest.approx(totals["inside"] / 1000, abs=0.01)
    assert summary["device_idle_total_us"] == pytest.approx(totals["total"] / 1000, abs=0.01)
    assert (steps.gap_before_us.dropna() >= 0).all() and (steps.idle_inside_us >= 0).all()


def test_training_trace_steps_are_profiler_steps_with_the_autograd_thread():
    result = analyze_traces([DATA / "training_two_threads.trace.json.gz"])
    assert result.step_rule is StepRule.PROFILER_STEP and result.unattributed_ops == 0
    assert set(result.steps.launch_threads) == {"1+2"} and set(result.steps.kernels) == {14}
    assert [t["tid"] for t in result.traces[0]["launch_threads"]] == [2, 1]
    # the steps are the iterations, not the forward passes: a gap never spans a backward
    assert result.steps.range_name.str.startswith("ProfilerStep#").all()


def test_overlapping_sglang_steps_report_overlap_not_negative_gaps():
    result = analyze_traces([DATA / "sglang_overlap.trace.json.gz"])
    steps = result.steps
    assert result.step_rule is StepRule.SGLANG and set(steps.launch_threads) == {"11"}
    overlapping = steps[steps.overlap_before_us > 0]
    assert len(overlapping) >= 3 and (overlapping.gap_before_us == 0).all()
    assert result.summary["overlap_total_us"] == pytest.approx(steps.overlap_before_us.sum())
    assert steps.stream.iloc[0] == "7+9"


def test_epoch_timestamps_keep_sub_microsecond_gaps_exact():
    steps = analyze_traces([DATA / "epoch_timestamps.trace.json.gz"]).steps
    assert list(steps.gap_before_us.iloc[1:]) == [0.8, 1.3, 0.35, 2.0, 0.95, 1.0, 1.7]
    assert analyze_traces([DATA / "epoch_timestamps.trace.json.gz"]).traces[0]["origin_ns"] > 0


def test_a_graph_launch_gives_its_kernels_to_its_step():
    result = analyze_traces([DATA / "vllm_graph_sync.trace.json.gz"])
    assert result.step_rule is StepRule.VLLM and "split 3 ProfilerStep" in result.notes[-1]
    assert set(result.steps.kernels) == {40} and set(result.steps.memcpys) == {2}
    assert result.unattributed_ops == 0
