"""Token identity with logprobs: equal tokens must carry equal logprobs, and a divergence
without margins is classified by the top-2 logprob gap."""

import math

from typer.testing import CliRunner

import stepgap
from stepgap.cli import app
from stepgap.identity import LOGPROB_RTOL, Verdict, compare_tokens

TOKENS = {0: [5, 6, 7], 1: [8, 9]}
LOGPROBS = {0: [-0.5, -1.25, -2.0], 1: [-0.1, -3.0]}


def test_equal_tokens_and_logprobs_within_tolerance_are_identical():
    close = {rid: [v * (1 + LOGPROB_RTOL / 2) for v in values] for rid, values in LOGPROBS.items()}
    identity = compare_tokens(TOKENS, TOKENS, logprobs=(LOGPROBS, close))
    assert identity.identical and identity.logprobs_compared == 2
    assert "logprobs of 2" in identity.describe()


def test_equal_tokens_with_other_logprobs_are_not_identical():
    other = {0: [-0.5, -1.5, -2.0], 1: [-0.1, -3.0]}
    identity = compare_tokens(TOKENS, TOKENS, logprobs=(LOGPROBS, other))
    assert not identity.identical and identity.first is None
    difference = identity.first_logprob_difference
    assert (difference.request_id, difference.position) == (0, 1)
    assert "same tokens, different logprobs" in identity.describe()


def test_without_margins_the_top2_logprob_gap_classifies_a_divergence():
    a, b = {0: [5, 6]}, {0: [5, 4]}
    top_tie = {0: [[(5, -0.1), (3, -2.0)], [(6, -0.70), (4, -0.71)]]}
    top_clear = {0: [[(5, -0.1), (3, -2.0)], [(6, -0.2), (4, -1.9)]]}
    tie = compare_tokens(a, b, top_logprobs=(top_tie, top_tie))
    assert tie.first.verdict is Verdict.NEAR_TIE and math.isclose(tie.first.margin_a, 0.01)
    clear = compare_tokens(a, b, top_logprobs=(top_clear, top_clear))
    assert clear.first.verdict is Verdict.LOGIC_ERROR


def test_a_run_with_logprobs_saves_them_and_compare_uses_them(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--device", "cpu", "--workload", "smoke", "--num-requests", "12"]
    result = CliRunner().invoke(app, [*args, "--logprobs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sync, overlap = (stepgap.load_run(out / mode) for mode in ("sync", "overlap"))
    assert set(sync.logprobs) == set(sync.tokens)
    for rid, tokens in sync.tokens.items():
        assert len(sync.logprobs[rid]) == len(sync.top_logprobs[rid]) == len(tokens)
        for logprob, top, token in zip(
            sync.logprobs[rid], sync.top_logprobs[rid], tokens, strict=True
        ):
            assert len(top) == 2 and top[0][1] >= top[1][1] and logprob <= 0
            if sync.top_logprobs and top[0][0] == token:
                assert math.isclose(top[0][1], logprob, rel_tol=1e-6)
    assert sync.logprobs == overlap.logprobs and sync.top_logprobs == overlap.top_logprobs
    steps = overlap.steps
    assert {"decode_rows", "prefill_tokens", "chunks"} <= set(steps.columns)
    assert (steps.kind == "mixed").any()
    mixed = steps[steps.kind == "mixed"]
    assert (mixed.decode_rows > 0).all() and (mixed.prefill_tokens > 0).all()
    assert (steps.num_tokens == steps.decode_rows + steps.prefill_tokens).all()
    compared = CliRunner().invoke(app, ["compare", str(out / "sync"), str(out / "overlap")])
    assert compared.exit_code == 0 and "logprobs of 12" in compared.output
