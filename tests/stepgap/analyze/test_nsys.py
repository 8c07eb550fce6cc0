"""Nsight Systems SQLite exports: the fixture's steps, exactly as its generator laid them out.

tests/data/analyze/make_nsys_fixture.py documents the layout: NVTX `stepgap/launch` ranges
at host 100, 300, 600, 1000 µs; per step an H2D copy and kernel_a on stream 7, kernel_b on
stream 13, a D2H copy on stream 7 and, in the third step, a memset on stream 13; two
launches from outside the step ranges: the warm-up one belongs to no step, the other
thread's (at 320 µs, in the second step's time) to the second step. The earliest event (a
launch at 20 µs) is time zero.
"""

import sqlite3

import numpy as np
import pandas as pd
import pytest

from stepgap.analyze import StepOptions, TraceError, analyze_traces, read_trace

from .conftest import NSYS_FIXTURE

NAN = np.nan
MERGED = pd.DataFrame(
    {
        "step": [0, 1, 2, 3],
        "stream": ["7+13"] * 4,
        "host_start_us": [80.0, 280.0, 580.0, 980.0],
        "host_end_us": [130.0, 330.0, 630.0, 1030.0],
        "device_start_us": [90.0, 290.0, 590.0, 990.0],
        "device_end_us": [130.0, 330.0, 633.0, 1030.0],
        "busy_us": [40.0, 40.0, 43.0, 40.0],
        "gap_before_us": [NAN, 160.0, 260.0, 357.0],
        "kernels": [2, 3, 2, 2],
        "memcpys": [2, 2, 2, 2],
        "memsets": [0, 0, 1, 0],
        "idle_inside_us": [2.0, 2.0, 4.0, 2.0],  # [H+12, H+14] (+ [H+50, H+52])
    }
)
SEPARATE = pd.DataFrame(
    {
        "step": [0, 1, 2, 3] * 2,
        "stream": ["7"] * 4 + ["13"] * 4,
        "device_start_us": [90.0, 290.0, 590.0, 990.0, 100.0, 300.0, 600.0, 1000.0],
        "device_end_us": [127.0, 327.0, 627.0, 1027.0, 130.0, 330.0, 633.0, 1030.0],
        "busy_us": [37.0] * 4 + [30.0, 30.0, 33.0, 30.0],
        "gap_before_us": [NAN, 163.0, 263.0, 363.0, NAN, 170.0, 270.0, 367.0],
        "kernels": [1, 2, 1, 1] + [1] * 4,  # the other thread's kernel [H+41, H+43]
        "memcpys": [2] * 4 + [0] * 4,
        "memsets": [0] * 4 + [0, 0, 1, 0],
        "idle_inside_us": [7.0, 5.0, 7.0, 7.0, 0.0, 0.0, 2.0, 0.0],
    }
)


def test_fixture_is_read_as_an_nsight_export():
    data = read_trace(NSYS_FIXTURE, 0)
    assert data.format == "nsys" and data.device_name == "NVIDIA H100 80GB HBM3"
    assert data.origin_ns == 1_790_000_000_000_000_000 + 20_000
    assert sorted(set(data.ranges.name.astype(str))) == ["stepgap/launch", "stepgap/step"]
    assert set(data.calls.name.astype(str)) == {
        "cudaLaunchKernel",
        "cudaMemcpyAsync",
        "cudaMemsetAsync",
    }
    assert data.describe()["kernels"] == 10 and data.describe()["memsets"] == 1


def test_merged_streams_table_is_exactly_the_expected_one():
    result = analyze_traces([NSYS_FIXTURE])
    got = result.steps[list(MERGED.columns)]
    pd.testing.assert_frame_equal(got, MERGED, check_dtype=False)
    assert set(result.steps.range_name) == {"stepgap/launch"}
    assert result.unattributed_ops == 1  # the warm-up launch
    threads = result.traces[0]["launch_threads"]
    assert [(t["tid"], t["device_ops"]) for t in threads] == [(4321, 17), (4400, 1)]
    assert result.summary["gap_p50_us"] == 260.0
    assert result.summary["idle_fraction"] == pytest.approx(777 / 940)


def test_separate_streams_table_is_exactly_the_expected_one():
    result = analyze_traces([NSYS_FIXTURE], StepOptions(streams="separate"))
    got = result.steps[list(SEPARATE.columns)]
    pd.testing.assert_frame_equal(got, SEPARATE, check_dtype=False)
    assert result.summary["num_groups"] == 2 and result.summary["gap_samples"] == 6
    assert result.summary["gap_total_us"] == 163 + 263 + 363 + 170 + 270 + 367


def test_an_sqlite_file_that_is_not_an_export_is_refused(tmp_path):
    path = tmp_path / "notes.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    with pytest.raises(TraceError, match="SQLite database but not an Nsight Systems export"):
        read_trace(path, 0)


def test_an_export_missing_columns_is_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER, end INTEGER)")
    with pytest.raises(TraceError, match="CUPTI_ACTIVITY_KIND_KERNEL lacks column"):
        read_trace(path, 0)


def test_a_corrupt_database_is_refused(tmp_path):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(NSYS_FIXTURE.read_bytes()[:100] + b"\x00garbage" * 50)
    with pytest.raises(TraceError, match="SQLite"):
        read_trace(path, 0)
