"""Invariant checks over one verification case: the same stopped workload under the sync and
the overlap schedule, plus a stop-free reference run that fixes what each request must emit.

Each check is a stateless function of the `Evidence` returning the violations it found, as
`Finding`s that name the bad (request, position, step) with both schedules' values there
and a diagnosis. `CHECKS` lists them in root-cause order: when two fire at the same step,
the earlier one is the closer explanation.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from stepgap.identity import NEAR_TIE_LOGIT_MARGIN
from stepgap.mixes import expected_output
from stepgap.verify.trace import RequestTrace, RunTrace

MODES = ("sync", "overlap")
COMPARED = "sync vs overlap"  # a Finding's `mode` when it compares the two schedules
LAGGED = "(the overlap's lagged step) "


@dataclass(frozen=True)
class ValueAt:
    """What one run emitted for a (request, position): token, top-2 margin, delivering step."""

    token: int | None
    margin: float | None
    step: int | None

    def describe(self) -> str:
        if self.token is None:
            return "no token"
        margin = "" if self.margin is None else f" (top-2 margin {self.margin:.4g})"
        step = "" if self.step is None else f" from step {self.step}"
        return f"token {self.token}{margin}{step}"


@dataclass(frozen=True)
class Finding:
    """One violated invariant. `step` is a step of the `mode` run (of the overlap run when
    the finding compares schedules); `None` fields do not apply to the check."""

    check: str
    mode: str
    request_id: int | None
    position: int | None
    step: int | None
    sync: ValueAt | None
    overlap: ValueAt | None
    reference_token: int | None
    diagnosis: str

    def sort_key(self) -> tuple[float, int]:
        step = math.inf if self.step is None else self.step
        return (step, list(CHECKS).index(self.check))

    def where(self) -> str:
        parts = [f"{self.mode} run"]
        for label, value in (("request", self.request_id), ("position", self.position)):
            if value is not None:
                parts.append(f"{label} {value}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """Everything the checks read for one case."""

    reference: dict[int, list[int]]  # stop-free sync run: tokens per request
    eos_token_id: int
    sync: RunTrace
    overlap: RunTrace
    margin_tolerance: float = 0.0
    reference_margins: dict[int, list[float]] = field(default_factory=dict)

    def run(self, mode: str) -> RunTrace:
        return self.sync if mode == "sync" else self.overlap

    def usable(self) -> list[RunTrace]:
        """The runs that finished without raising (the others have nothing to check)."""
        return [run for run in (self.sync, self.overlap) if run.error is None]

    @functools.cached_property
    def _emission_steps(self) -> dict[str, dict[int, list[int]]]:
        return {mode: self.run(mode).emission_steps() for mode in MODES}

    def emission_step(self, mode: str, request_id: int, position: int) -> int | None:
        steps = self._emission_steps[mode].get(request_id, [])
        return steps[position] if 0 <= position < len(steps) else None

    @functools.cached_property
    def _reference_values(self) -> dict[tuple[int, float], tuple[int, int]]:
        values = {}
        for rid, margins in self.reference_margins.items():
            tokens = self.reference.get(rid, [])
            for k, (token, margin) in enumerate(zip(tokens, margins, strict=False)):
                values[(token, margin)] = (rid, k)
        return values

    def source_of(self, token: int, margin: float) -> tuple[int, int] | None:
        """The (request, position) whose token and top-2 margin the stop-free reference
        computed as these: an fp32 margin is a fingerprint of one row of one step."""
        return self._reference_values.get((token, margin))

    def value_at(self, mode: str, request_id: int, position: int) -> ValueAt | None:
        run = self.run(mode)
        if run.error is not None:
            return None
        request = run.requests.get(request_id)
        if request is None or position >= len(request.tokens):
            return ValueAt(None, None, None)
        step = self.emission_step(mode, request_id, position)
        return ValueAt(request.tokens[position], request.margins[position], step)

    def finding(
        self, check: str, mode: str, request_id: int, position: int, diagnosis: str, step=None
    ) -> Finding:
        """A Finding at (request, position) carrying both schedules' values there."""
        if step is None:
            step_mode = "overlap" if mode == COMPARED else mode
            step = self.emission_step(step_mode, request_id, position)
        reference = self.reference.get(request_id, [])
        return Finding(
            check,
            mode,
            request_id,
            position,
            step,
            self.value_at("sync", request_id, position),
            self.value_at("overlap", request_id, position),
            reference[position] if position < len(reference) else None,
            diagnosis,
        )


Check = Callable[[Evidence], list[Finding]]


def _finding(check: str, mode: str, diagnosis: str, request_id=None, step=None) -> Finding:
    """A finding about a run or a step as a whole, with no position or values."""
    return Finding(check, mode, request_id, None, step, None, None, None, diagnosis)


def check_completed(ev: Evidence) -> list[Finding]:
    """Each run finished without raising, and every request in it finished."""
    findings = []
    for run in (ev.sync, ev.overlap):
        if run.error is not None:
            message = f"the {run.mode} run raised {run.error}"
            findings.append(_finding("completed", run.mode, message))
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
                findings.append(_finding("step_membership", run.mode, why, step=step.index))
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
        return _finding("identical_tokens", COMPARED, why, request_id=rid)
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
