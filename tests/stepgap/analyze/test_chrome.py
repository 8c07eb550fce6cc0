"""The Chrome / Kineto reader: which events become which columns, and the clock."""

import json

import numpy as np
import pytest

from stepgap.analyze.chrome import ChromeColumns, read_chrome

from .conftest import LAYOUTS, VLLM_STEP, decode_loop


@pytest.mark.parametrize("layout", LAYOUTS)
def test_columns_hold_ranges_calls_and_device_ops(tmp_path, layout):
    path = decode_loop(steps=3).write(tmp_path / "t.json.gz", layout)
    data = read_chrome(path, rank=5)
    assert data.rank == 5 and data.format == "chrome" and data.device_name == "GPU-X"
    assert list(data.ranges.name.astype(str)) == [VLLM_STEP] * 3
    assert len(data.calls) == 12 and set(data.calls.name.astype(str)) == {
        "cudaLaunchKernel",
        "cudaMemcpyAsync",
    }
    assert list(data.ops.kind.value_counts().sort_index()) == [6, 6, 0]  # kernel, memcpy, memset
    # times are µs from the first event (the first range, at 1000 µs)
    assert data.ranges.start_us.iloc[0] == 0.0
    first_copy = data.ops.sort_values("start_us").iloc[0]
    assert (first_copy.start_us, first_copy.end_us, first_copy.stream) == (10.0, 12.0, 7)
    assert sorted(data.ops.correlation) == sorted(data.calls.correlation)


def test_the_columnar_and_the_decoded_paths_agree(tmp_path):
    trace = decode_loop(steps=5)
    path = trace.write(tmp_path / "t.json")
    fast = read_chrome(path, 0)
    slow = ChromeColumns()
    slow.add(json.loads(path.read_text())["traceEvents"])
    ranges, calls, ops = slow.tables()
    origin = min(ranges.start_us.min(), calls.start_us.min(), ops.start_us.min())
    assert np.allclose(np.sort(ops.start_us - origin), np.sort(fast.ops.start_us))
    assert sorted(calls.correlation) == sorted(fast.calls.correlation)
    assert fast.meta["decoded_groups"] == 0 and fast.meta["exact_fallbacks"] == 0


def test_base_time_gives_the_absolute_origin(tmp_path):
    path = decode_loop(base_ns=1_700_000_000_000_000_000).write(tmp_path / "t.json")
    assert read_chrome(path, 0).origin_ns == 1_700_000_000_000_000_000 + 1_000_000


def test_absolute_epoch_timestamps_give_the_origin_too(tmp_path):
    trace = decode_loop()
    for event in trace.events:
        if "ts" in event:
            event["ts"] += 1_700_000_000_000_000.0  # Unix-epoch µs, as older Kineto wrote
    data = read_chrome(trace.write(tmp_path / "t.json"), 0)
    assert data.origin_ns == pytest.approx(1_700_000_000_001_000_000, abs=1000)
    assert data.ranges.start_us.iloc[0] == 0.0


def test_relative_timestamps_without_a_base_have_no_absolute_origin(tmp_path):
    assert read_chrome(decode_loop().write(tmp_path / "t.json"), 0).origin_ns is None


def test_rank_comes_from_distributed_info(tmp_path):
    trace = decode_loop()
    trace.header["distributedInfo"] = {"rank": 3, "world_size": 4}
    assert read_chrome(trace.write(tmp_path / "t.json"), 0).rank == 3


def test_older_layouts_string_streams_and_legacy_profiler_steps(tmp_path, make_trace):
    trace = make_trace()
    trace.range("ProfilerStep#7", 0.0, 100.0, cat="cpu_op")  # how older traces filed it
    trace.range("aten::mm", 1.0, 5.0, cat="cpu_op")  # a plain host op: not a range
    trace.launch(2.0, 10.0, 20.0)
    kernel = trace.events[-2]
    kernel["cat"], kernel["tid"] = "Kernel", "stream 9"
    del kernel["args"]["device"], kernel["args"]["stream"]
    data = read_chrome(trace.write(tmp_path / "t.json"), 0)
    assert list(data.ranges.name.astype(str)) == ["ProfilerStep#7"]
    assert (data.ops.device.iloc[0], data.ops.stream.iloc[0]) == (0, 9)


def test_malformed_events_are_skipped_and_counted(tmp_path, make_trace):
    trace = make_trace()
    for at in (2.0, 3.0, 4.0):
        trace.launch(at, 10.0 * at, 10.0 * at + 5)
    ops = [e for e in trace.events if e.get("cat") == "kernel"]
    ops[0]["ts"] = "soon"
    ops[1]["args"] = [1, 2]  # not an object
    data = read_chrome(trace.write(tmp_path / "t.json"), 0)
    assert len(data.ops) == 1 and data.meta["malformed_events"] == 2


def test_paddle_profiler_traces_as_fastdeploy_writes_them(tmp_path):
    """Paddle's chrometracing_logger.cc: ProfileStep#N[...] on "tid(Python)", CudaRuntime
    calls and Kernel / Memcpy ops with args["correlation id"], integer-µs timestamps."""
    events = []
    for i in range(3):
        at = 1_000 + 100 * i
        events.append(_paddle("ProfileStep", f"ProfileStep#{i}[90.000 us]", at, 90, "7(Python)"))
        for k, (cat, name) in enumerate((("Kernel", "gemm"), ("Memcpy", "Memcpy DtoH"))):
            correlation = 10 * i + k + 1
            call = _paddle("CudaRuntime", "cudaLaunchKernel[2.000 us]", at + 1 + k, 2, "7(C++)")
            call["args"]["correlation id"] = correlation
            op = _paddle(cat, f"{name}[5.000 us]", at + 10 + 20 * k, 5, 7)
            op["pid"] = 0
            op["args"].update({"stream": 7, "correlation id": correlation})
            if cat == "Kernel":
                op["args"]["device"] = 0
            events += [call, op]
    path = tmp_path / "paddle.json"
    path.write_text(json.dumps({"traceEvents": events}, indent=2))
    from stepgap.analyze import StepRule, analyze_traces

    result = analyze_traces([path])
    assert result.step_rule is StepRule.PROFILER_STEP
    assert list(result.steps.range_name) == ["ProfileStep#0", "ProfileStep#1", "ProfileStep#2"]
    assert list(result.steps.kernels) == [1] * 3 and list(result.steps.memcpys) == [1] * 3
    assert list(result.steps.gap_before_us.dropna()) == [75.0, 75.0]
    assert set(result.steps.launch_threads) == {"7"}


def _paddle(cat: str, name: str, ts: int, dur: float, tid) -> dict:
    args = {"start_time": f"{ts} us", "end_time": f"{ts + dur} us"}
    return {
        "name": name,
        "pid": 4242,
        "tid": tid,
        "ts": ts,
        "dur": dur,
        "ph": "X",
        "cat": cat,
        "args": args,
    }
