"""The metric registry is the one definition of every summary metric: what `summarize`
computes, what noise samples stand behind it, and the schema-1 names that still read."""

import math

import numpy as np
import pytest

import stepgap
from stepgap.gate.noise import metric_samples
from stepgap.goodput import GoodputSLO
from stepgap.metric_registry import BY_KEY, LEGACY_KEYS, METRICS, Direction, headline
from stepgap.metrics import summarize
from stepgap.ratio_noise import ratio_interval
from stepgap.summary_view import compare_metrics

OLD_RUN = "tests/data/gate/smoke-a"  # written by schema 1


@pytest.fixture(scope="module")
def runs(both_run):
    return {run.mode: run for run in stepgap.load_runs(both_run)}


def test_summarize_computes_exactly_the_registered_metrics(runs):
    for run in runs.values():
        assert set(run.summary) == set(BY_KEY)


def test_keys_follow_vllm_bench_serve_and_fastdeploy():
    for stat in ("mean", "median", "std", "p90", "p99"):
        for name in ("ttft", "tpot", "itl", "e2el"):
            assert BY_KEY[f"{stat}_{name}_ms"].unit == "ms"
        assert BY_KEY[f"{stat}_s_decode"].direction is Direction.HIGHER
    for key in ("request_throughput", "output_throughput", "total_token_throughput"):
        assert BY_KEY[key].direction is Direction.HIGHER
    assert len({m.label for m in METRICS}) == len(METRICS)
    assert {"p99_ttft_ms", "p99_itl_ms", "request_throughput"} <= {m.key for m in headline()}


def test_exact_noise_samples_reproduce_the_summary(runs):
    for run in runs.values():
        for metric in METRICS:
            if metric.noise is None or not metric.noise.exact:
                continue
            samples = metric_samples(run, metric.key)
            assert samples is not None and len(samples.values) >= 2, metric.key
            value = float(samples.statistic(samples.values))
            assert value == pytest.approx(run.summary[metric.key]), metric.key


def test_throughput_noise_is_a_proxy_the_gate_does_not_use(runs):
    sync, overlap = runs["sync"], runs["overlap"]
    assert metric_samples(sync, "output_throughput") is None
    rate = metric_samples(sync, "output_throughput", proxies=True)
    assert rate is not None and rate.values.shape[1] == 2
    ratio = overlap.summary["output_throughput"] / sync.summary["output_throughput"]
    interval = ratio_interval(sync, overlap, "output_throughput", ratio)
    assert interval is not None and interval.proxy and interval.low <= ratio <= interval.high


def test_every_headline_ratio_has_a_reading(runs):
    rows = compare_metrics(runs["sync"], runs["overlap"])
    gap = next(row for row in rows if row.metric.key == "gap_p50_us")
    assert gap.noise is not None and gap.reading in ("better", "worse", "within noise", "")
    assert all(row.noise is None for row in rows if row.metric.noise is None)


def test_schema_1_runs_read_under_both_names():
    run = stepgap.load_run(f"{OLD_RUN}/sync")
    assert run.meta["schema_version"] == 2  # upgraded in memory; the files are untouched
    for old, new in LEGACY_KEYS.items():
        assert new in run.summary and run.summary[old] == run.summary[new], old
    assert not set(LEGACY_KEYS) & set(run.summary)  # iteration shows current names only


def test_new_runs_read_under_schema_1_names(runs):
    summary = runs["sync"].summary
    assert summary["tpot_p50_ms"] == summary["median_tpot_ms"]
    assert summary.get("output_throughput_tok_s") == summary["output_throughput"]
    assert "wall_s" in summary and summary.get("no_such_metric", 7) == 7


def test_goodput_counts_requests_within_every_slo(runs):
    run = runs["sync"]
    args = (run.steps, run.requests, run.token_times, run.tokens, run.summary["duration"])
    everyone = summarize(*args, goodput=GoodputSLO(ttft=1e9, tpot=1e9, e2el=1e9))
    assert everyone["request_goodput"] == pytest.approx(everyone["request_throughput"])
    nobody = summarize(*args, goodput=GoodputSLO(tpot=1e-6))
    assert nobody["request_goodput"] == 0.0
    assert summarize(*args)["request_goodput"] is None
    median_tpot = float(np.median(run.requests.tpot_ms.dropna()))
    half = summarize(*args, goodput=GoodputSLO(tpot=median_tpot))["request_goodput"]
    assert 0 < half < everyone["request_goodput"] and not math.isnan(half)
