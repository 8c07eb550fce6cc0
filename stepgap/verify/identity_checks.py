"""The checks that compare the schedules token by token: identical tokens (with a
diagnosis of what went wrong at the first difference) and identical logprobs."""

from __future__ import annotations

from stepgap.identity import NEAR_TIE_LOGIT_MARGIN
from stepgap.verify.evidence import COMPARED, Evidence, Finding, finding_about
from stepgap.verify.trace import RequestTrace


def check_identical_tokens(ev: Evidence) -> list[Finding]:
    """Overlap emits the same tokens and top-2 margins as sync, request by request, and
    sync's tokens are the stop-free reference's (a request's tokens do not depend on its
    schedule, batch or stop rule, only where it stops)."""
    findings = []
    if ev.sync.error is None:
        for rid, request in ev.sync.requests.items():
            reference = ev.reference.get(rid, [])
            k = _first_difference(request.tokens, tuple(reference[: len(request.tokens)]))
            if k is not None and k < len(request.tokens):
                why = "sync differs from the stop-free reference run of the same requests"
                findings.append(ev.finding("identical_tokens", "sync", rid, k, why))
    if ev.sync.error is None and ev.overlap.error is None:
        for rid in sorted(set(ev.sync.requests) | set(ev.overlap.requests)):
            finding = _schedule_difference(ev, rid)
            if finding is not None:
                findings.append(finding)
    return findings


def _first_difference(a, b, margins_a=(), margins_b=(), tolerance=0.0) -> int | None:
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return k
        both = k < len(margins_a) and k < len(margins_b)
        if both and abs(margins_a[k] - margins_b[k]) > tolerance:
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


def _schedule_difference(ev: Evidence, rid: int) -> Finding | None:
    sync, overlap = ev.sync.requests.get(rid), ev.overlap.requests.get(rid)
    if sync is None or overlap is None:
        why = f"request {rid} is missing from the {'sync' if sync is None else 'overlap'} run"
        return finding_about("identical_tokens", COMPARED, why, request_id=rid)
    k = _first_difference(
        sync.tokens, overlap.tokens, sync.margins, overlap.margins, ev.margin_tolerance
    )
    if k is None:
        return None
    return ev.finding("identical_tokens", COMPARED, rid, k, _diagnose(ev, sync, overlap, k))


def _diagnose(ev: Evidence, sync: RequestTrace, overlap: RequestTrace, k: int) -> str:
    """Why sync and overlap differ at position k, as far as the values tell."""
    if k >= len(overlap.tokens) or k >= len(sync.tokens):
        longer = "overlap" if len(overlap.tokens) > len(sync.tokens) else "sync"
        return (
            f"same tokens up to position {k}, then {longer} goes on "
            f"({len(sync.tokens)} vs {len(overlap.tokens)} tokens): a stop handled differently"
        )
    same_logits = abs(sync.margins[k] - overlap.margins[k]) <= ev.margin_tolerance
    if sync.tokens[k] == overlap.tokens[k]:
        what = "same token, different top-2 margin"
    elif same_logits:
        what = "same top-2 margin (same logits), different token"
    elif sync.params.temperature == 0 and sync.margins[k] < NEAR_TIE_LOGIT_MARGIN:
        what = (
            f"a different greedy token at a near-tie (top-2 margin {sync.margins[k]:.4g}); "
            "both schedules run the same kernels, so even a near-tie must not flip"
        )
    else:
        what = f"a different token where sync's top-2 margin is {sync.margins[k]:.4g}"
    return f"{what}: {_likely_cause(ev, sync, overlap, k, same_logits)}"


def _likely_cause(ev: Evidence, sync, overlap, k: int, same_logits: bool) -> str:
    rid = sync.request_id
    # A (token, fp32 margin) pair is a fingerprint: if overlap's value at (rid, k) is one
    # the reference computed for another position, overlap read another step's or row's.
    source = ev.source_of(overlap.tokens[k], overlap.margins[k])
    if source is not None and source != (rid, k):
        return _misread_result(ev, rid, k, *source)
    if k == 1:
        return (
            "the first decode after the prefill went wrong: it did not embed the token the "
            "prefill sampled (placeholder id or stale input?)"
        )
    if same_logits:
        return (
            "the sampler drew with another position or seed, so the step read inputs meant "
            "for another step (pinned input buffer reused too early?)"
        )
    return "overlap computed this position from different inputs (stale or mixed-up inputs?)"


def _misread_result(ev: Evidence, rid: int, k: int, src_rid: int, src_k: int) -> str:
    whose = "this request's" if src_rid == rid else f"request {src_rid}'s"
    value = f"overlap holds exactly {whose} result for position {src_k} (token and margin)"
    if src_rid == rid:
        later = src_k > k
    else:  # order the two rows by the sync steps that computed them, where sync has both
        here, there = ev.emission_step("sync", rid, k), ev.emission_step("sync", src_rid, src_k)
        if here is None or there is None or here == there:
            return f"{value}: a step's rows were handed to the wrong requests"
        later = there > here
    if later:
        return (
            f"{value}, which a later step computes: that step's results landed on this "
            "step's before post-processing read them (results ring too small?)"
        )
    return (
        f"{value}, which an earlier step computed: post-processing read the results "
        "buffer before this step's copy landed (missing event wait?)"
    )


def check_identical_logprobs(ev: Evidence) -> list[Finding]:
    """Overlap delivers the same logprobs as sync with each token (the sampled token's and
    the top-n), request by request, for the requests that asked for them."""
    findings: list[Finding] = []
    if ev.sync.error is not None or ev.overlap.error is not None:
        return findings
    for rid in sorted(set(ev.sync.requests) & set(ev.overlap.requests)):
        sync, overlap = ev.sync.requests[rid], ev.overlap.requests[rid]
        k = _first_logprob_difference(sync, overlap, ev.margin_tolerance)
        if k is not None:
            why = (
                f"same token, different logprobs: sync {_logprob_text(sync, k)}, overlap "
                f"{_logprob_text(overlap, k)} (results read from another step's buffer?)"
            )
            findings.append(ev.finding("identical_logprobs", COMPARED, rid, k, why))
    return findings


def _first_logprob_difference(a: RequestTrace, b: RequestTrace, tolerance: float) -> int | None:
    pairs = zip(a.tokens, b.tokens, a.logprobs, b.logprobs, strict=False)
    for k, (token_a, token_b, lp_a, lp_b) in enumerate(pairs):
        if token_a != token_b:
            return None  # a token difference: identical_tokens reports it
        tops = zip(a.top_logprobs[k], b.top_logprobs[k], strict=True)
        if abs(lp_a - lp_b) > tolerance or any(
            x[0] != y[0] or abs(x[1] - y[1]) > tolerance for x, y in tops
        ):
            return k
    if len(a.logprobs) != len(b.logprobs) and len(a.tokens) == len(b.tokens):
        return min(len(a.logprobs), len(b.logprobs))
    return None


def _logprob_text(request: RequestTrace, k: int) -> str:
    if k >= len(request.logprobs):
        return "none"
    top = ", ".join(f"{i}:{lp:.4g}" for i, lp in request.top_logprobs[k][:3])
    return f"{request.logprobs[k]:.6g} [top {top}]"
