"""Saved runs are self-consistent: tables and summary agree with DESIGN.md's definitions."""

import math

import numpy as np
import pytest

import stepgap
from stepgap.metrics import STEP_COLUMNS, gap_sample, token_digest


@pytest.fixture(scope="module")
def runs(both_run):
    return {r.mode: r for r in stepgap.load_runs(both_run)}


def test_both_modes_saved_complete_with_all_tables(runs):
    assert set(runs) == {"sync", "overlap"}
    for run in runs.values():
        assert run.complete and run.meta["schema_version"] == 2
        assert list(run.steps.columns) == STEP_COLUMNS
        assert len(run.requests) == 16 and len(run.tokens) == 16
        env = run.meta["environment"]
        assert {"device", "torch", "python", "git_revision", "command"} <= set(env)


def test_busy_plus_gaps_is_the_device_span(runs):
    for run in runs.values():
        s = run.steps
        span = s.device_end_us.max() - s.device_start_us.min()
        assert s.busy_us.sum() + s.gap_before_us.sum() == pytest.approx(span, rel=1e-9)
        assert run.summary["idle_fraction"] == pytest.approx(s.gap_before_us.sum() / span)
        assert (s.busy_us > 0).all() and (s.gap_before_us.dropna() >= 0).all()


def test_tpot_recomputed_from_tokens_matches_summary(runs):
    for run in runs.values():
        tpots = []
        for times in run.token_times.values():
            if len(times) >= 2:
                tpots.append((times[-1] - times[0]) / (len(times) - 1) * 1e3)
        assert np.mean(tpots) == pytest.approx(run.summary["tpot_mean_ms"])
        assert np.percentile(tpots, 50) == pytest.approx(run.summary["tpot_p50_ms"])
        total = sum(len(t) for t in run.tokens.values())
        assert run.summary["output_throughput_tok_s"] == pytest.approx(
            total / run.summary["wall_s"]
        )


def test_gap_stats_cover_decode_steps_after_warmup(runs):
    for run in runs.values():
        gaps = gap_sample(run.steps, run.summary["warmup_steps"])
        assert len(gaps) == run.summary["gap_samples"] > 0
        assert run.summary["gap_p50_us"] == pytest.approx(float(np.percentile(gaps, 50)))
        assert run.summary["gap_max_us"] == pytest.approx(gaps.max())


def test_gap_attribution_never_exceeds_the_gap(runs):
    for run in runs.values():
        s = run.steps.dropna(subset=["gap_before_us"])
        parts = s[[c for c in s.columns if c.startswith("gap_") and c != "gap_before_us"]]
        assert (parts.sum(axis=1) <= s.gap_before_us.clip(lower=0) + 1e-6).all()


def test_overlap_idles_less_and_emits_identical_tokens(runs):
    sync, overlap = runs["sync"], runs["overlap"]
    assert overlap.summary["idle_fraction"] < sync.summary["idle_fraction"]
    assert overlap.tokens == sync.tokens
    assert overlap.summary["token_digest"] == token_digest(sync.tokens)
    assert not math.isnan(overlap.summary["tpot_p99_ms"])


def test_clock_alignment_follows_drift_between_device_and_host_clocks():
    """Synthetic sync-like steps whose device clock drifts 30 µs/s from the host clock."""
    import pandas as pd

    from stepgap.metrics import host_clock_offset_us

    n, step_us, gap_us, latency_us = 400, 1000.0, 300.0, 5.0
    device_start = np.arange(n) * (step_us + gap_us)
    true_offset = 50.0 + device_start * 30e-6  # host - device, growing with time
    table = pd.DataFrame(
        {
            "step": np.arange(n),
            "device_start_us": device_start,
            "device_end_us": device_start + step_us,
            "gap_before_us": np.r_[np.nan, np.full(n - 1, gap_us)],
        }
    )
    host_launch = device_start + true_offset - latency_us  # device starts 5 µs after launch
    host_wake = device_start + step_us + true_offset + latency_us  # host wakes 5 µs after end
    spans = pd.DataFrame(
        [(i, "launch", host_launch[i] - 3, host_launch[i] + 2) for i in range(n)]
        + [(i, "wait", host_launch[i] + 2, host_wake[i]) for i in range(n)],
        columns=["step", "phase", "start_us", "end_us"],
    )
    estimate = host_clock_offset_us(table, spans, origin_us=50.0)
    assert np.abs(estimate - true_offset).max() < 2 * latency_us
