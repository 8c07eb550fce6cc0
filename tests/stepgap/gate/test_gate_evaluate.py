"""Each kind of check passing and failing on real runs, planted regressions, a noisy pair."""

import json

import pytest
from gate_plant import RUN_A, RUN_B, change_token, copy_group, scale_gaps, write_rules

from stepgap.gate.evaluate import run_gate
from stepgap.gate.facts import FACTS, Fact, FactValue
from stepgap.gate.inputs import GateInputError
from stepgap.metrics import summarize
from stepgap.runs import load_run, save_run


def summary(group, mode):
    return load_run(group / mode).summary


def by_title(report):
    return {c.title: c for c in report.checks}


# --- bound ---------------------------------------------------------------------------------


def test_bound_passes_and_fails_on_one_mode(tmp_path):
    value = summary(RUN_A, "overlap")["gap_p50_us"]
    rules = write_rules(
        tmp_path, f"overlap.gap_p50_us <= {value * 2:.3f}", f"overlap.gap_p50_us <= {value / 2:.3f}"
    )
    report = run_gate(RUN_A, rules)
    assert [c.passed for c in report.checks] == [True, False]
    assert [c.subject for c in report.checks] == ["overlap.gap_p50_us"] * 2
    assert report.checks[0].value == pytest.approx(value)
    assert report.checks[1].detail.startswith("overlap.gap_p50_us = ")
    assert "not <=" in report.checks[1].detail
    assert not report.passed and report.failures == [report.checks[1]]


def test_plain_metric_applies_to_each_mode(tmp_path):
    sync, overlap = summary(RUN_A, "sync")["gap_p50_us"], summary(RUN_A, "overlap")["gap_p50_us"]
    between = (sync + overlap) / 2  # overlap's gaps are below it, sync's above
    report = run_gate(RUN_A, write_rules(tmp_path, f"gap_p50_us <= {between:.3f}"))
    checks = by_title(report)
    assert set(checks) == {
        f"gap_p50_us <= {between:.3f} [sync]",
        f"gap_p50_us <= {between:.3f} [overlap]",
    }
    assert not checks[f"gap_p50_us <= {between:.3f} [sync]"].passed
    assert checks[f"gap_p50_us <= {between:.3f} [overlap]"].passed


def test_plain_metric_on_a_single_mode_run_is_that_mode(tmp_path):
    value = summary(RUN_A, "sync")["tpot_p50_ms"]
    report = run_gate(RUN_A / "sync", write_rules(tmp_path, f"tpot_p50_ms < {value * 1.5:.4f}"))
    (check,) = report.checks
    assert check.passed and check.subject == "sync.tpot_p50_ms" and check.mode is None


def test_missing_value_fails(tmp_path):
    """Warm-up longer than the run leaves no gap samples: the gate cannot pass a NaN."""
    group = copy_group(RUN_A, tmp_path / "long-warmup")
    run = load_run(group / "sync")
    run.meta["summary"] = summarize(
        run.steps, run.requests, run.token_times, run.tokens, run.summary["wall_s"], 10_000
    )
    save_run(run, group / "sync", force=True)
    report = run_gate(group, write_rules(tmp_path, "sync.gap_p50_us <= 1e9"))
    assert not report.passed
    assert report.checks[0].detail == "sync.gap_p50_us has no value in this run"


# --- ratio ---------------------------------------------------------------------------------


def test_ratio_passes_on_a_real_run(tmp_path):
    report = run_gate(RUN_A, write_rules(tmp_path, "overlap/sync idle_fraction < 1"))
    (check,) = report.checks
    expected = summary(RUN_A, "overlap")["idle_fraction"] / summary(RUN_A, "sync")["idle_fraction"]
    assert check.passed and check.value == pytest.approx(expected) and check.value < 0.5


def test_ratio_catches_an_overlap_that_stopped_overlapping(tmp_path):
    """Overlap's gaps planted as long as sync's (and then some): the ratio rule fails."""
    planted = copy_group(RUN_A, tmp_path / "planted")
    sync_gap = summary(RUN_A, "sync")["gap_p50_us"]
    scale_gaps(planted / "overlap", 1.5 * sync_gap / summary(RUN_A, "overlap")["gap_p50_us"])
    report = run_gate(planted, write_rules(tmp_path, "overlap/sync idle_fraction < 1"))
    (check,) = report.checks
    assert not check.passed and check.value > 1
    assert check.detail.startswith("overlap/sync idle_fraction = ")


# --- regression against a baseline ---------------------------------------------------------


@pytest.mark.parametrize(("mode", "factor"), [("sync", 1.5), ("overlap", 3.0)])
def test_regression_catches_planted_larger_gaps(tmp_path, mode, factor):
    planted = copy_group(RUN_A, tmp_path / "planted")
    scale_gaps(planted / mode, factor)
    rules = write_rules(tmp_path, "gap_p50_us <= baseline + 5%")
    report = run_gate(planted, rules, baseline_path=RUN_A)
    checks = {c.mode: c for c in report.checks}
    regressed, untouched = checks[mode], checks[{"sync": "overlap", "overlap": "sync"}[mode]]
    assert not regressed.passed and not regressed.within_noise
    assert regressed.change_pct == pytest.approx((factor - 1) * 100)
    assert regressed.noise.low_pct > 0
    assert "excludes no change: regression" in regressed.detail
    assert untouched.passed and untouched.change_pct == pytest.approx(0.0)


def test_regression_within_noise_passes_and_says_so(tmp_path):
    """+2 % on gaps crosses a 0 % limit but is well inside the run's own spread."""
    planted = copy_group(RUN_A, tmp_path / "planted")
    scale_gaps(planted / "sync", 1.02)
    report = run_gate(planted, write_rules(tmp_path, "sync.gap_p50_us <= baseline"), RUN_A)
    (check,) = report.checks
    assert check.passed and check.within_noise and check.status == "PASS (noise)"
    assert check.value > check.limit
    assert check.noise.low_pct < 0 < check.noise.high_pct
    assert "passed only because of noise" in check.detail
    assert report.noise_passes == [check]


def test_regression_on_higher_is_better_metric_without_samples(tmp_path):
    """Throughput has no per-sample data: its limit alone decides, and the output says so."""
    planted = copy_group(RUN_A, tmp_path / "planted")
    scale_gaps(planted / "sync", 1.5)  # longer gaps, longer wall time, lower throughput
    rules = write_rules(tmp_path, "sync.output_throughput_tok_s >= baseline - 0.1%")
    (check,) = run_gate(planted, rules, RUN_A).checks
    assert not check.passed and check.noise is None and check.change_pct < -0.1
    assert "no per-sample data to estimate noise: limit alone decides" in check.detail
    (better,) = run_gate(RUN_A, rules, planted).checks  # the other way round: an improvement
    assert better.passed


def test_noisy_but_equal_pair_of_real_runs_passes(tmp_path):
    """RUN_A and RUN_B are the same command run twice: their gaps differ by noise alone.
    Gated either way round, nothing fails — and at least one check crossed its 5 % limit,
    so it is the noise estimate, not slack in the limit, that keeps them passing."""
    rules = write_rules(
        tmp_path,
        "gap_p50_us <= baseline + 5%",
        "tokens_identical == true",
        "tokens_identical_to_baseline == true",
    )
    forward, backward = run_gate(RUN_B, rules, RUN_A), run_gate(RUN_A, rules, RUN_B)
    for report in (forward, backward):
        assert report.passed, [c.detail for c in report.failures]
    changes = [c.change_pct for c in forward.checks if c.change_pct is not None]
    assert all(abs(change) > 1 for change in changes)  # really noisy, not a copy
    assert forward.noise_passes + backward.noise_passes


# --- facts ---------------------------------------------------------------------------------


def test_tokens_identical_passes_on_real_runs_and_fails_on_a_changed_token(tmp_path):
    rules = write_rules(tmp_path, "tokens_identical == true", "tokens_identical_to_baseline = true")
    clean = run_gate(RUN_A, rules, RUN_B)
    assert clean.passed
    assert clean.checks[0].detail.endswith("sync vs overlap: identical (8 requests)")

    planted = copy_group(RUN_A, tmp_path / "planted")
    change_token(planted / "overlap", request_id=3, position=5)
    identity, to_baseline = run_gate(planted, rules, RUN_A).checks
    assert not identity.passed and identity.value is False
    assert "1/8 requests differ; first at request 3 position 5" in identity.detail
    assert not to_baseline.passed
    assert "sync vs baseline: identical" in to_baseline.detail
    assert "overlap vs baseline: 1/8 requests differ" in to_baseline.detail


def test_fact_can_be_required_false(tmp_path):
    planted = copy_group(RUN_A, tmp_path / "planted")
    change_token(planted / "sync", request_id=0, position=0)
    (check,) = run_gate(planted, write_rules(tmp_path, "tokens_identical != true")).checks
    assert check.passed


def test_a_registered_fact_plugs_in(tmp_path, monkeypatch):
    """The extension point `stepgap verify` will use: a fact read from an attached file."""

    def verify_passed(inputs):
        verdict = json.loads(inputs.attachment("verify", "verify.passed").read_text())
        return FactValue(bool(verdict["passed"]), verdict["summary"])

    monkeypatch.setitem(FACTS, "verify.passed", Fact("verify.passed", "verified", verify_passed))
    rules = write_rules(tmp_path, "verify.passed == true")
    verdict = tmp_path / "verdict.json"
    with pytest.raises(GateInputError, match="pass --attach verify=FILE"):
        run_gate(RUN_A, rules)
    with pytest.raises(GateInputError, match=r"attached verify file .* does not exist"):
        run_gate(RUN_A, rules, attachments={"verify": verdict})
    verdict.write_text('{"passed": true, "summary": "3 checks ok"}')
    report = run_gate(RUN_A, rules, attachments={"verify": verdict})
    assert report.checks[0].detail == "verify.passed = true: 3 checks ok"
    verdict.write_text('{"passed": false, "summary": "divergence"}')
    assert not run_gate(RUN_A, rules, attachments={"verify": verdict}).passed


# --- bad input -----------------------------------------------------------------------------


def test_unknown_metric_names_the_valid_ones_and_the_line(tmp_path):
    rules = write_rules(tmp_path, "tokens_identical == true", "overlap.gap_p50 <= 3")
    with pytest.raises(GateInputError) as error:
        run_gate(RUN_A, rules)
    message = str(error.value)
    assert message.startswith(
        f"{rules} line 5: unknown metric 'gap_p50' (did you mean 'gap_p50_us'?)"
    )
    # run.json of schema 1: its keys are listed by their current names (metric registry)
    assert "valid metrics: busy_total_us, device_span_us, duration," in message
    assert (
        "median_tpot_ms" in message
        and "facts: predict.duration_error, " in message
        and "predict.throughput_error" in message
        and "tokens_identical, tokens_identical_to_baseline" in message
    )
    assert "token_digest" not in message  # not a number: no rule can compare it


@pytest.mark.parametrize(
    ("check", "run", "baseline", "message"),
    [
        ("overlpa.gap_p50_us <= 3", RUN_A, None, "unknown mode or fact 'overlpa'.*sync, overlap"),
        ("gap_p50_us <= baseline + 5%", RUN_A, None, "pass --baseline RUN"),
        ("tokens_identical == true", RUN_A / "sync", None, "has only sync"),
        ("gap_p50_us <= baseline", RUN_A, RUN_A / "sync", "has no overlap run"),
        ("overlap/prefill idle_fraction < 1", RUN_A, None, "no mode 'prefill'"),
        ("gap_p50_us == true", RUN_A, None, "not a fact"),
        ("tokens_identical <= baseline", RUN_A, RUN_A, "is a fact"),
        ("tokens_identical_to_baseline == true", RUN_A, None, "pass --baseline RUN"),
    ],
)
def test_rules_the_runs_cannot_answer_are_bad_input(tmp_path, check, run, baseline, message):
    with pytest.raises(GateInputError, match=message):
        run_gate(run, write_rules(tmp_path, check), baseline)


def test_report_json_names_every_check(tmp_path):
    rules = write_rules(tmp_path, "tokens_identical == true", "gap_p50_us <= baseline + 5%")
    data = run_gate(RUN_B, rules, RUN_A).to_dict()
    assert data["checks_total"] == 3 and data["baseline"] == str(RUN_A)
    assert [c["kind"] for c in data["checks"]] == ["fact", "regression", "regression"]
    assert data["checks"][1]["noise"]["statistic"] == "median"
    json.dumps(data)  # JSON-ready as it is
