"""The report's data functions: bounded outputs that keep the numbers of the tables."""

import math

import numpy as np
import pandas as pd
import pytest

import stepgap
from stepgap.metrics import gap_sample
from stepgap.report import data


def steps_table(busy_us, gaps_us, kinds=None, after_idle=None):
    """A steps table with the given busy times and gaps (gap i is before step i)."""
    starts, ends, t = [], [], 0.0
    for i, busy in enumerate(busy_us):
        t += gaps_us[i] if i else 0.0
        starts.append(t)
        t += busy
        ends.append(t)
    table = pd.DataFrame({"step": range(len(busy_us)), "device_start_us": starts})
    table["device_end_us"] = ends
    table["busy_us"] = table.device_end_us - table.device_start_us
    table["gap_before_us"] = table.device_start_us - table.device_end_us.shift(1)
    table["kind"] = kinds or ["decode"] * len(busy_us)
    table["after_idle"] = after_idle or [False] * len(busy_us)
    return table


def test_timeline_window_is_the_median_idle_window_of_consecutive_decode_steps():
    n = 40
    gaps = [10.0] * n
    gaps[30] = 5000.0  # an outlier gap: windows holding it are not typical
    kinds = ["decode"] * n
    kinds[3] = "prefill"
    window = data.timeline_window(steps_table([100.0] * n, gaps, kinds), warmup=2, length=6)
    assert len(window) == 6
    assert window.start_us.iloc[0] == 0.0
    assert window.gap_before_us.iloc[1:].tolist() == [10.0] * 5
    assert math.isnan(window.gap_before_us.iloc[0])
    assert not set(window.step) & {0, 1, 2, 3, 30}  # warm-up, prefill and outlier left out
    assert (window.end_us - window.start_us).tolist() == [100.0] * 6


def test_timeline_window_falls_back_to_the_longest_decode_streak():
    kinds = ["decode", "prefill", "decode", "decode", "decode", "prefill"]
    window = data.timeline_window(steps_table([5.0] * 6, [1.0] * 6, kinds), 0, length=10)
    assert window.step.tolist() == [2, 3, 4]


def test_trace_without_kind_columns_counts_every_step_as_decode():
    table = steps_table([5.0] * 30, [2.0] * 30).drop(columns=["kind", "after_idle"])
    assert len(data.timeline_window(table, warmup=0)) == data.TIMELINE_STEPS
    unlabelled = steps_table([5.0] * 30, [2.0] * 30, kinds=["step"] * 30)
    run = stepgap.RunData({"summary": {"warmup_steps": 4}}, unlabelled, pd.DataFrame())
    assert data.gap_values(run).tolist() == pytest.approx([2.0] * 26)


def test_cdf_points_exact_for_small_samples_and_bounded_for_large():
    small = data.cdf_points(np.array([3.0, 1.0, 2.0]))
    assert small.value.tolist() == [1.0, 1.0, 2.0, 3.0]
    assert small.fraction.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    values = np.random.default_rng(0).lognormal(3, 1, 200_000)
    large = data.cdf_points(values)
    assert len(large) == data.CDF_POINTS
    assert large.value.iloc[0] == values.min() and large.value.iloc[-1] == values.max()
    median = large.value[np.searchsorted(large.fraction, 0.5)]
    assert median == pytest.approx(np.median(values), rel=0.01)


def test_histogram_shares_bins_across_runs_and_counts_every_value():
    rng = np.random.default_rng(1)
    samples = {"a": rng.lognormal(2, 1, 5000), "b": np.append(rng.lognormal(5, 1, 3000), 0.0)}
    log = data.use_log_scale(list(samples.values()))
    assert log
    hist = data.histogram_counts(samples, log)
    a, b = hist[hist.run == "a"], hist[hist.run == "b"]
    assert a.left.tolist() == b.left.tolist() and len(a) == data.HISTOGRAM_BINS
    assert a["count"].sum() == 5000 and b["count"].sum() == 3000
    assert b.dropped.iloc[0] == 1  # the zero gap cannot sit on a log axis
    assert np.all(
        a.right.to_numpy() / a.left.to_numpy() == pytest.approx(a.right.iloc[0] / a.left.iloc[0])
    )


def test_linear_scale_when_values_span_less_than_two_decades():
    assert not data.use_log_scale([np.array([10.0, 20.0, 900.0])])
    assert data.use_log_scale([np.array([10.0, 20.0]), np.array([1000.0])])


def test_throughput_counts_every_token_in_shared_bins():
    times_a = {0: [0.0, 0.1, 0.2, 0.3], 1: [0.05, 0.15, 0.25, 0.35, 1.0]}
    times_b = {0: list(np.linspace(0.0, 0.5, 200))}
    width = data.throughput_bin_width_s([times_a, times_b])
    frame = data.throughput_over_time(times_a, width)
    tokens = (frame.tok_s * (frame.end_s - frame.start_s)).sum()
    assert tokens == pytest.approx(9)
    assert frame.end_s.iloc[-1] == pytest.approx(1.0)
    assert len(data.throughput_over_time({}, width)) == 0


def test_gap_attribution_means_sum_to_the_mean_gap(both_run):
    run = stepgap.load_run(both_run / "sync")
    means = data.gap_attribution(run)
    assert list(means.index) == [
        "schedule",
        "prepare",
        "launch",
        "wait",
        "postprocess",
        "output",
        "other",
    ]
    assert means.sum() == pytest.approx(run.summary["gap_mean_us"], rel=1e-6)


def test_gap_values_are_the_summary_gaps(both_run):
    run = stepgap.load_run(both_run / "overlap")
    gaps = data.gap_values(run)
    assert len(gaps) == run.summary["gap_samples"]
    assert np.median(gaps) == pytest.approx(run.summary["gap_p50_us"])
    expected = gap_sample(run.steps, run.summary["warmup_steps"]).to_numpy()
    assert np.array_equal(gaps, expected)


def test_latency_samples_match_the_requests(both_run):
    run = stepgap.load_run(both_run / "sync")
    samples = data.latency_samples(run)
    assert np.median(samples["tpot"]) == pytest.approx(run.summary["tpot_p50_ms"])
    assert np.median(samples["ttft"]) == pytest.approx(run.summary["ttft_p50_ms"])
    assert np.median(samples["itl"]) == pytest.approx(run.summary["itl_p50_ms"])
