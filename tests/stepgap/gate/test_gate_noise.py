"""Noise: the samples behind each metric, and deterministic bootstrap intervals."""

import math

import numpy as np
import pytest
from gate_plant import RUN_A, copy_group, scale_gaps

from stepgap.gate.noise import (
    NoiseSettings,
    change_interval,
    metric_samples,
    statistic_interval,
)
from stepgap.runs import load_run

SAMPLED = [
    "gap_p50_us",
    "gap_p90_us",
    "gap_p99_us",
    "gap_mean_us",
    "tpot_p50_ms",
    "tpot_mean_ms",
    "ttft_p50_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "e2e_p50_ms",
    "decode_speed_tok_s",
]


@pytest.mark.parametrize("mode", ["sync", "overlap"])
@pytest.mark.parametrize("metric", SAMPLED)
def test_samples_reproduce_the_saved_summary(mode, metric):
    """The statistic of the samples is the summary value stepgap run saved."""
    run = load_run(RUN_A / mode)
    samples = metric_samples(run, metric)
    assert samples is not None and len(samples.values) >= 8
    assert float(samples.statistic(samples.values)) == pytest.approx(run.summary[metric])


@pytest.mark.parametrize("metric", ["output_throughput_tok_s", "idle_fraction", "gap_max_us"])
def test_whole_run_metrics_have_no_samples(metric):
    assert metric_samples(load_run(RUN_A / "sync"), metric) is None


def test_intervals_are_deterministic_and_cover_the_estimate():
    run = load_run(RUN_A / "overlap")
    samples = metric_samples(run, "gap_p50_us")
    settings = NoiseSettings()
    low, high = statistic_interval(samples, settings)
    assert (low, high) == statistic_interval(samples, settings)
    assert low <= run.summary["gap_p50_us"] <= high and low < high
    same = change_interval(samples, samples, settings)
    assert same == change_interval(samples, samples, settings)


def test_a_run_against_itself_is_no_change():
    samples = metric_samples(load_run(RUN_A / "sync"), "gap_p50_us")
    interval = change_interval(samples, samples, NoiseSettings())
    assert interval.low_pct < 0 < interval.high_pct
    assert not interval.excludes_zero(growing_is_worse=True)
    assert not interval.excludes_zero(growing_is_worse=False)


# The overlap gaps of RUN_A are bimodal (about 25 and 52 us), so a rerun could move their
# median from one cluster to the other: only a larger planted growth is beyond that noise.
@pytest.mark.parametrize(("mode", "factor"), [("sync", 1.5), ("overlap", 3.0)])
def test_planted_larger_gaps_lie_outside_the_noise(tmp_path, mode, factor):
    planted = copy_group(RUN_A, tmp_path / "planted")
    scale_gaps(planted / mode, factor)
    base = metric_samples(load_run(RUN_A / mode), "gap_p50_us")
    current = metric_samples(load_run(planted / mode), "gap_p50_us")
    np.testing.assert_allclose(current.values, base.values * factor)
    interval = change_interval(base, current, NoiseSettings())
    assert interval.excludes_zero(growing_is_worse=True)
    assert interval.low_pct <= (factor - 1) * 100 <= interval.high_pct


def test_wider_confidence_gives_a_wider_interval():
    samples = metric_samples(load_run(RUN_A / "overlap"), "itl_p50_ms")
    narrow = statistic_interval(samples, NoiseSettings(confidence=0.8))
    wide = statistic_interval(samples, NoiseSettings(confidence=0.99))
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_too_few_samples_give_no_estimate():
    samples = metric_samples(load_run(RUN_A / "sync"), "gap_p50_us")
    one = type(samples)(samples.metric, samples.values[:1], "median", samples.statistic)
    assert change_interval(one, samples, NoiseSettings()) is None
    assert all(math.isnan(v) for v in statistic_interval(one, NoiseSettings()))


@pytest.mark.parametrize(
    "settings",
    [
        {"confidence": 1.0},
        {"confidence": 0.2},
        {"resamples": 10},
        {"resamples": 2.5},
        {"seed": -1},
        {"seed": True},
    ],
)
def test_noise_settings_are_validated(settings):
    with pytest.raises(ValueError):
        NoiseSettings(**settings)
