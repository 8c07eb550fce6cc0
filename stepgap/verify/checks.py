"""Invariant checks over one verification case: the same stopped workload under the sync and
the overlap schedule, plus a stop-free reference run that fixes what each request must emit.

Each check is a stateless function of the `Evidence` (`stepgap.verify.evidence`) returning
the violations it found as `Finding`s. `CHECKS` lists them in root-cause order: when two
fire at the same step, the earlier one is the closer explanation. The per-request checks
are here; the sync-vs-overlap comparisons in `stepgap.verify.identity_checks`.
"""

from __future__ import annotations

from collections import Counter

from stepgap.mixes import expected_output
from stepgap.verify.evidence import (
    LAGGED,
    MODES,
    Check,
    Evidence,
    Finding,
    ValueAt,
    finding_about,
)
from stepgap.verify.identity_checks import check_identical_logprobs, check_identical_tokens
from stepgap.verify.trace import RequestTrace, RunTrace

__all__ = ["CHECKS", "MODES", "Evidence", "Finding", "ValueAt", "describe_checks", "run_checks"]


def check_completed(ev: Evidence) -> list[Finding]:
    """Each run finished without raising, and every request in it finished."""
    findings = []
    for run in (ev.sync, ev.overlap):
        if run.error is not None:
            message = f"the {run.mode} run raised {run.error}"
            findings.append(finding_about("completed", run.mode, message))
            continue
        unfinished = [r for r in run.requests.values() if r.finish_reason is None]
        if not run.complete or unfinished:
            rid = unfinished[0].request_id if unfinished else None
            message = f"the {run.mode} run ended with {len(unfinished)} request(s) unfinished"
            findings.append(
                Finding("completed", run.mode, rid, None, None, None, None, None, message)
            )
    return findings


def check_step_membership(ev: Evidence) -> list[Finding]:
    """Every token a step delivered went to a request that ran in that step; no step holds
    a request or a slot twice."""
    findings = []
    for run in ev.usable():
        steps = {s.index: s for s in run.steps}
        position: Counter[int] = Counter()
        for index, rid in run.emitted:
            k = position[rid]
            position[rid] += 1
            step = steps.get(index)
            if step is None or rid not in step.request_ids:
                why = _foreign_token(run, rid, index, step)
                findings.append(ev.finding("step_membership", run.mode, rid, k, why, index))
        for step in run.steps:
            doubled = len(set(step.slots)) < len(step.slots)
            if doubled or len(set(step.request_ids)) < len(step.request_ids):
                why = f"step {step.index} holds a slot or a request twice: slots {step.slots}"
                findings.append(finding_about("step_membership", run.mode, why, step=step.index))
    return findings


def _foreign_token(run: RunTrace, rid: int, index: int, step) -> str:
    if step is None:
        return f"request {rid} received a token from step {index}, which was never launched"
    slot = run.requests[rid].slot
    owner = next((o for o, s in zip(step.request_ids, step.slots, strict=True) if s == slot), None)
    row = f"; slot {slot}'s row in that step was request {owner}'s" if owner is not None else ""
    return (
        f"request {rid} received a token from step {index}, which it did not run in "
        f"(step {index} ran requests {list(step.request_ids)}){row}: tokens were mapped to "
        "requests through a slot table that changed while the step was in flight, not "
        "through the step's record"
    )


def check_positions(ev: Evidence) -> list[Finding]:
    """A request's k-th token came from the k-th step it ran in (no position repeated or
    skipped), its first step was its prefill, and it ran past its last token only as the
    overlap's one lagged step after an EOS/stop-id stop — never past max_tokens."""
    findings = []
    for run in ev.usable():
        ran, delivered = run.steps_running(), run.emission_steps()
        prefilled = {(s.index, rid) for s in run.steps for rid in s.prefilled_ids}
        for rid, request in run.requests.items():
            finding = _position_fault(run.mode, request, ran[rid], delivered[rid], prefilled)
            if finding is not None:
                k, step, why = finding
                findings.append(ev.finding("positions", run.mode, rid, k, why, step))
    return findings


def _position_fault(mode, request: RequestTrace, ran, delivered, prefilled):
    """(position, step, diagnosis) of the request's first position fault, or None."""
    for k, step in enumerate(ran):
        if ((step, request.request_id) in prefilled) != (k == 0):
            what = "its first step was a decode" if k == 0 else "it was prefilled again"
            return k, step, f"{what} (step {step}): position {k} computed from the wrong input"
    for k, step in enumerate(delivered):
        if k >= len(ran):
            return k, step, f"token {k} arrived but the request ran in only {len(ran)} steps"
        if step != ran[k] and step not in ran:
            return None  # a token from a step it did not run in: step_membership reports it
        if step != ran[k]:
            kind = "repeated" if step in ran[:k] else "skipped"
            why = f"position {k} {kind}: it came from step {step}, but step {ran[k]} computed it"
            return k, step, why
    lagged = mode == "overlap" and request.finish_reason in ("eos", "stop_token")
    allowed = len(delivered) + (1 if lagged else 0)
    if len(ran) > allowed:
        k = allowed
        rule = f"max_tokens={request.params.max_tokens}"
        if request.finish_reason != "length":
            rule = f"its {request.finish_reason} stop"
        why = (
            f"scheduled past its stop rule: it ran in step {ran[k]} (position {k}) after "
            f"{rule}; the overlap may run one lagged step past an EOS/stop id, never past "
            "max_tokens"
        )
        return k, ran[k], why
    return None


def _is_stop(token: int, request: RequestTrace, eos_token_id: int) -> bool:
    p = request.params
    return token in p.stop_token_ids or (token == eos_token_id and not p.ignore_eos)


def check_no_token_after_stop(ev: Evidence) -> list[Finding]:
    """No token follows a stop id or (unignored) EOS, and none lies beyond max_tokens."""
    findings = []
    for run in ev.usable():
        for rid, request in run.requests.items():
            tokens = request.tokens
            stop = next(
                (i for i, t in enumerate(tokens[:-1]) if _is_stop(t, request, ev.eos_token_id)),
                None,
            )
            if stop is not None:
                why = (
                    f"token {tokens[stop + 1]} at position {stop + 1} follows stop token "
                    f"{tokens[stop]} at position {stop}: the token of the step after the stop "
                    f"{LAGGED if run.mode == 'overlap' else ''}was kept instead of discarded"
                )
                findings.append(ev.finding("no_token_after_stop", run.mode, rid, stop + 1, why))
            elif len(tokens) > request.params.max_tokens:
                k = request.params.max_tokens
                why = f"{len(tokens)} tokens, beyond max_tokens={k}"
                findings.append(ev.finding("no_token_after_stop", run.mode, rid, k, why))
    return findings


def check_token_count(ev: Evidence) -> list[Finding]:
    """Each request emitted exactly as many tokens as its stop rule allows: the stop-free
    reference cut at its first stop id / EOS, and at max_tokens."""
    findings = []
    for run in ev.usable():
        for rid, request in run.requests.items():
            unstopped = ev.reference.get(rid, [])
            want = expected_output(request, unstopped, ev.eos_token_id)  # type: ignore[arg-type]
            got = len(request.tokens)
            if got == len(want):
                continue
            k = min(got, len(want))
            p = request.params
            rule = (
                f"max_tokens={p.max_tokens}, stop ids {list(p.stop_token_ids)}, EOS "
                f"{ev.eos_token_id}{' ignored' if p.ignore_eos else ''}"
            )
            why = f"{got} tokens where its stop rule ({rule}) allows exactly {len(want)}"
            step = ev.emission_step(run.mode, rid, k if got > k else got - 1)
            findings.append(ev.finding("token_count", run.mode, rid, k, why, step))
    return findings


CHECKS: dict[str, Check] = {
    "completed": check_completed,
    "step_membership": check_step_membership,
    "positions": check_positions,
    "no_token_after_stop": check_no_token_after_stop,
    "token_count": check_token_count,
    "identical_tokens": check_identical_tokens,
    "identical_logprobs": check_identical_logprobs,
}


def describe_checks() -> dict[str, str]:
    """Check name -> the first line of its docstring-sentence, for help and verdicts."""
    return {name: " ".join((check.__doc__ or "").split()) for name, check in CHECKS.items()}


def run_checks(ev: Evidence) -> dict[str, list[Finding]]:
    """Every check on one case, in `CHECKS` order."""
    return {name: check(ev) for name, check in CHECKS.items()}
