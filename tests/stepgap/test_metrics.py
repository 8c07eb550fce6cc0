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
        assert run.complete and run.meta["schema_version"] == 1
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
