"""Each invariant check on hand-made traces: quiet on a correct run, and on a violation it
names the right (request, position, step) with both schedules' values."""

import dataclasses

import pytest

from reference_engine import SamplingParams
from stepgap.verify.cases import Case
from stepgap.verify.checks import CHECKS, Evidence, run_checks
from stepgap.verify.runner import CaseResult
from stepgap.verify.trace import RequestTrace, RunTrace, StepTrace

EOS = 2
A, B = 0, 1
# Stop-free reference: request A runs to max_tokens=3; request B would go on after EOS.
REFERENCE = {A: [5, 6, 7, 3], B: [8, 9, EOS, 4]}
REFERENCE_MARGINS = {A: [0.5, 1.5, 2.5, 3.5], B: [0.5, 1.5, 2.5, 3.5]}


def request(rid, tokens, finish, slot, max_tokens=3, margins=None):
    params = SamplingParams(max_tokens=max_tokens)
    margins = margins or [0.5 + i for i in range(len(tokens))]
    return RequestTrace(rid, params, slot, tuple(tokens), tuple(margins), finish)


def steps(*rows):
    """rows: (kind, request ids); request r sits in slot r; a prefill step finishes the
    prompts of all its requests."""
    return tuple(
        StepTrace(i, kind, tuple(ids), tuple(ids), tuple(ids) if kind == "prefill" else ())
        for i, (kind, ids) in enumerate(rows)
    )


def correct_run(mode):
    """A (max_tokens 3) and B (stops on EOS at position 2). Overlap runs B one lagged
    step (3) past its EOS and discards that token."""
    rows = [("prefill", [A, B]), ("decode", [A, B]), ("decode", [A, B])]
    if mode == "overlap":
        rows.append(("decode", [B]))
    emitted = [(s, r) for s in range(3) for r in (A, B)]
    requests = {
        A: request(A, [5, 6, 7], "length", 0),
        B: request(B, [8, 9, EOS], "eos", 1, max_tokens=4),
    }
    return RunTrace(mode, requests, steps(*rows), tuple(emitted), complete=True)


def evidence(sync=None, overlap=None):
    sync, overlap = sync or correct_run("sync"), overlap or correct_run("overlap")
    return Evidence(REFERENCE, EOS, sync, overlap, reference_margins=REFERENCE_MARGINS)


def with_request(run, rid, **changes):
    requests = dict(run.requests)
    requests[rid] = dataclasses.replace(requests[rid], **changes)
    return dataclasses.replace(run, requests=requests)


def fired(ev):
    return {name: found for name, found in run_checks(ev).items() if found}


def test_correct_runs_pass_every_check():
    assert fired(evidence()) == {}
    assert list(CHECKS) == [
        "completed",
        "step_membership",
        "positions",
        "no_token_after_stop",
        "token_count",
        "identical_tokens",
        "identical_logprobs",
    ]


def test_sync_with_a_lagged_step_breaks_positions():
    sync = dataclasses.replace(correct_run("sync"), mode="sync")
    sync = dataclasses.replace(sync, steps=correct_run("overlap").steps)
    found = fired(evidence(sync=sync))
    assert list(found) == ["positions"]
    (finding,) = found["positions"]
    assert (finding.mode, finding.request_id, finding.position, finding.step) == ("sync", B, 3, 3)


def test_token_from_a_step_the_request_did_not_run_in():
    overlap = correct_run("overlap")
    # B's lagged step 3 hands its token to A, which did not run in step 3.
    overlap = dataclasses.replace(overlap, emitted=(*overlap.emitted, (3, A)))
    overlap = with_request(overlap, A, tokens=(5, 6, 7, 4), margins=(0.5, 1.5, 2.5, 0.9), slot=1)
    found = fired(evidence(overlap=overlap))
    first = min((f for fs in found.values() for f in fs), key=lambda f: f.sort_key())
    assert first.check == "step_membership"
    assert (first.request_id, first.position, first.step) == (A, 3, 3)
    assert "did not run in" in first.diagnosis and "request 1's" in first.diagnosis
    assert first.overlap.token == 4 and first.sync.token is None


def test_scheduled_past_max_tokens():
    overlap = correct_run("overlap")
    rows = [(s.kind, s.request_ids) for s in overlap.steps]
    rows[3] = ("decode", (A, B))  # A (finished by length) ran a fourth step
    overlap = dataclasses.replace(overlap, steps=steps(*rows))
    found = fired(evidence(overlap=overlap))
    assert list(found) == ["positions"]
    (finding,) = found["positions"]
    assert (finding.request_id, finding.position, finding.step) == (A, 3, 3)
    assert "max_tokens=3" in finding.diagnosis


def test_leaked_lag_token():
    overlap = correct_run("overlap")
    overlap = dataclasses.replace(overlap, emitted=(*overlap.emitted, (3, B)))
    overlap = with_request(overlap, B, tokens=(8, 9, EOS, 4), margins=(0.5, 1.5, 2.5, 3.5))
    found = fired(evidence(overlap=overlap))
    assert set(found) == {"no_token_after_stop", "token_count", "identical_tokens"}
    result = CaseResult(Case("f", "w", 0), None, found, 0.0)
    first = result.first
    assert first.check == "no_token_after_stop"  # same step: the root-cause check wins
    assert (first.request_id, first.position, first.step) == (B, 3, 3)
    assert first.overlap.token == 4 and first.sync.token is None
    assert "follows stop token 2" in first.diagnosis


def test_stopped_early_and_skipped_position():
    overlap = correct_run("overlap")
    emitted = [e for e in overlap.emitted if e != (1, A)]
    overlap = dataclasses.replace(overlap, emitted=tuple(emitted))
    overlap = with_request(overlap, A, tokens=(5, 7), margins=(0.5, 2.5))
    found = fired(evidence(overlap=overlap))
    assert {"positions", "token_count", "identical_tokens"} <= set(found)
    skipped = found["positions"][0]
    assert (skipped.request_id, skipped.position, skipped.step) == (A, 1, 2)
    assert "skipped" in skipped.diagnosis
    assert "2 tokens where its stop rule" in found["token_count"][0].diagnosis


@pytest.mark.parametrize(
    ("token", "margin", "cause"),
    [
        (7, 2.5, "which a later step computes"),  # the next step's result overwrote this one
        (5, 0.5, "which an earlier step computed"),  # read before this step's copy landed
        (9, 1.5, "request 1's result for position 1"),  # another request's row, same step
        (3, 3.5, "result for position 3"),  # beyond sync's output: from the reference
        (6, 9.0, "same token, different top-2 margin"),
        (3, 1.5, "first decode after the prefill"),
    ],
)
def test_divergence_diagnosis(token, margin, cause):
    overlap = with_request(
        correct_run("overlap"), A, tokens=(5, token, 7), margins=(0.5, margin, 2.5)
    )
    found = fired(evidence(overlap=overlap))
    assert list(found) == ["identical_tokens"]
    (finding,) = found["identical_tokens"]
    assert (finding.mode, finding.request_id, finding.position, finding.step) == (
        "sync vs overlap",
        A,
        1,
        1,
    )
    assert finding.sync.token == 6 and finding.overlap.token == token
    assert finding.reference_token == 6
    assert cause in finding.diagnosis


def test_sync_against_the_stop_free_reference():
    sync = with_request(correct_run("sync"), A, tokens=(5, 6, 3))
    overlap = with_request(correct_run("overlap"), A, tokens=(5, 6, 3))
    found = fired(evidence(sync=sync, overlap=overlap))
    assert list(found) == ["identical_tokens"]
    assert found["identical_tokens"][0].mode == "sync"
    assert found["identical_tokens"][0].position == 2


def test_a_crashed_run_is_reported_not_raised():
    crashed = RunTrace("overlap", {}, (), (), complete=False, error="RuntimeError: boom")
    found = fired(evidence(overlap=crashed))
    assert list(found) == ["completed"]
    assert "raised RuntimeError: boom" in found["completed"][0].diagnosis


def test_unfinished_request_fails_completed():
    overlap = with_request(correct_run("overlap"), B, finish_reason=None)
    found = fired(evidence(overlap=overlap))
    assert "completed" in found and found["completed"][0].request_id == B


def test_logprobs_from_another_step_are_caught_where_the_tokens_agree():
    """The same tokens with the logprobs of another position (what a results buffer of the
    wrong step holds) is the `logprobs-other-buffer` fault."""
    top = ((5, -0.1), (9, -2.5))
    sync = with_request(
        correct_run("sync"), A, logprobs=(-0.1, -0.2, -0.3), top_logprobs=(top,) * 3
    )
    overlap = with_request(
        correct_run("overlap"), A, logprobs=(-0.1, -0.3, -0.3), top_logprobs=(top,) * 3
    )
    found = fired(evidence(sync=sync, overlap=overlap))
    assert list(found) == ["identical_logprobs"]
    assert found["identical_logprobs"][0].position == 1


def test_a_request_in_chunks_gets_its_first_token_from_its_last_chunk():
    """Chunked prefill: a request's first step may be a chunk that delivers nothing; its
    first token comes from the step that finished its prompt, which may be a mixed step."""
    run = correct_run("sync")
    chunked = (StepTrace(0, "mixed", (A, B), (A, B), (A, B)), *run.steps[1:])
    assert fired(evidence(sync=dataclasses.replace(run, steps=chunked))) == {}
    wrong = (StepTrace(0, "mixed", (A, B), (A, B), (B,)), *run.steps[1:])
    found = fired(evidence(sync=dataclasses.replace(run, steps=wrong)))
    assert [f.request_id for f in found["positions"]] == [A]
