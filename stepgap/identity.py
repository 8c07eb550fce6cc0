"""Token identity between runs: equal ids per request, or the first divergence, classified."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Protocol

NEAR_TIE_LOGIT_MARGIN = 0.05  # bf16 logits of this model family carry ~1e-2 absolute error
LOGPROB_RTOL = 1e-3  # relative tolerance of logprob equality, as vLLM's end-to-end tests

Logprobs = dict[int, list[float]]  # per request: the sampled tokens' logprobs
TopLogprobs = Mapping[int, Sequence[Sequence[tuple[int, float]]]]  # per request, position


class Verdict(StrEnum):
    """What the first divergence means (the value is what outputs show)."""

    NEAR_TIE = "numerical near-tie"
    LOGIC_ERROR = "logic error"
    NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Divergence:
    """The first (request, position) where two runs emitted different tokens."""

    request_id: int
    position: int
    token_a: int | None
    token_b: int | None
    margin_a: float
    margin_b: float
    verdict: Verdict


@dataclass(frozen=True)
class LogprobDifference:
    """The first (request, position) with the same token in both runs but logprobs that
    differ beyond `LOGPROB_RTOL`."""

    request_id: int
    position: int
    logprob_a: float
    logprob_b: float


@dataclass(frozen=True)
class Identity:
    identical: bool
    requests_compared: int
    requests_differing: int
    only_in_a: tuple[int, ...]
    only_in_b: tuple[int, ...]
    first: Divergence | None
    differences: tuple[str, ...] = ()  # why the runs' tokens need not agree at all
    logprobs_compared: int = 0  # requests whose logprobs both runs recorded
    first_logprob_difference: LogprobDifference | None = None

    def describe(self) -> str:
        if self.identical:
            logprobs = f", logprobs of {self.logprobs_compared}" if self.logprobs_compared else ""
            return f"identical ({self.requests_compared} requests{logprobs})"
        if self.first is None and self.first_logprob_difference is not None:
            lp = self.first_logprob_difference
            return (
                f"same tokens, different logprobs: request {lp.request_id} position "
                f"{lp.position}: {lp.logprob_a:.6g} vs {lp.logprob_b:.6g} (beyond rtol "
                f"{LOGPROB_RTOL:g}) -> logic error"
            )
        if self.first is None:
            only_a, only_b = len(self.only_in_a), len(self.only_in_b)
            return f"different request sets (only in A: {only_a}, only in B: {only_b})"
        d = self.first
        why = f" ({'; '.join(self.differences)})" if self.differences else ""
        return (
            f"{self.requests_differing}/{self.requests_compared} requests differ; first at "
            f"request {d.request_id} position {d.position}: {d.token_a} vs {d.token_b}, "
            f"top-2 margin {d.margin_a:.4g} / {d.margin_b:.4g} -> {d.verdict}{why}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _margin(margins: dict[int, list[float]], top: TopLogprobs, rid: int, position: int) -> float:
    """The top-2 logit margin at a position, else its top-2 logprob gap (the same number:
    logprobs are logits less one normaliser per position)."""
    values = margins.get(rid, [])
    margin = float(values[position]) if position < len(values) else math.nan
    tops = top.get(rid, [])
    if math.isnan(margin) and position < len(tops) and len(tops[position]) >= 2:
        margin = tops[position][0][1] - tops[position][1][1]
    return margin


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= LOGPROB_RTOL * max(1.0, abs(a), abs(b))


def first_logprob_difference(
    tokens: dict[int, list[int]], logprobs_a: Logprobs, logprobs_b: Logprobs
) -> tuple[int, LogprobDifference | None]:
    """(requests compared, the first same-token position whose logprobs differ)."""
    common = sorted(set(logprobs_a) & set(logprobs_b) & set(tokens))
    for rid in common:
        pairs = zip(logprobs_a[rid], logprobs_b[rid], strict=False)
        for position, (a, b) in enumerate(pairs):
            if not _close(a, b):
                return len(common), LogprobDifference(rid, position, a, b)
    return len(common), None


def compare_tokens(
    tokens_a: dict[int, list[int]],
    tokens_b: dict[int, list[int]],
    margins_a: dict[int, list[float]] | None = None,
    margins_b: dict[int, list[float]] | None = None,
    near_tie: float = NEAR_TIE_LOGIT_MARGIN,
    differences: tuple[str, ...] = (),
    logprobs: tuple[Logprobs, Logprobs] | None = None,
    top_logprobs: tuple[TopLogprobs, TopLogprobs] = ({}, {}),
) -> Identity:
    """Compare per-request token ids of two runs.

    At the first differing position, a top-2 logit margin below `near_tie` in either run
    means the two runs' logits were within rounding of a tie there: a "numerical near-tie".
    Anything else — a clear winner that changed, or a sequence that is longer or shorter
    with equal tokens before — is a "logic error". Both readings assume the runs had the
    same model, weights and sampling; `differences` (stepgap.premise) says where they did
    not, and then a divergence is only "not comparable". With `logprobs` of both runs,
    equal tokens must also carry logprobs equal within `LOGPROB_RTOL` (relative); without
    margins, the divergence is classified by the top-2 logprob gap there.
    """
    margins_a, margins_b = margins_a or {}, margins_b or {}
    top_a, top_b = top_logprobs
    common = sorted(set(tokens_a) & set(tokens_b))
    differing, first = 0, None
    for rid in common:
        a, b = tokens_a[rid], tokens_b[rid]
        if a == b:
            continue
        differing += 1
        position = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if position is None:
            position = min(len(a), len(b))
        if first is None:
            m_a, m_b = (
                _margin(margins_a, top_a, rid, position),
                _margin(margins_b, top_b, rid, position),
            )
            both_have = position < len(a) and position < len(b)
            tie = both_have and min(m_a, m_b) < near_tie
            first = Divergence(
                rid,
                position,
                a[position] if position < len(a) else None,
                b[position] if position < len(b) else None,
                m_a,
                m_b,
                _verdict(tie, differences),
            )
    only_a = tuple(sorted(set(tokens_a) - set(tokens_b)))
    only_b = tuple(sorted(set(tokens_b) - set(tokens_a)))
    same_tokens = {rid: tokens_a[rid] for rid in common if tokens_a[rid] == tokens_b[rid]}
    compared, logprob_difference = first_logprob_difference(same_tokens, *(logprobs or ({}, {})))
    identical = differing == 0 and not only_a and not only_b and logprob_difference is None
    return Identity(
        identical, len(common), differing, only_a, only_b, first, differences,
        compared, logprob_difference,
    )  # fmt: skip


def _verdict(tie: bool, differences: tuple[str, ...]) -> Verdict:
    if differences:
        return Verdict.NOT_COMPARABLE
    return Verdict.NEAR_TIE if tie else Verdict.LOGIC_ERROR


class TokenRecords(Protocol):
    """What a run holds of its tokens (a `stepgap.runs.RunData`)."""

    tokens: dict[int, list[int]]
    margins: dict[int, list[float]]
    logprobs: Logprobs

    @property
    def top_logprobs(self) -> TopLogprobs: ...


def run_identity(
    a: TokenRecords,
    b: TokenRecords,
    near_tie: float = NEAR_TIE_LOGIT_MARGIN,
    differences: tuple[str, ...] = (),
) -> Identity:
    """`compare_tokens` of two runs' tokens, margins and logprobs."""
    return compare_tokens(
        a.tokens, b.tokens, a.margins, b.margins, near_tie, differences,
        (a.logprobs, b.logprobs), (a.top_logprobs, b.top_logprobs),
    )  # fmt: skip
