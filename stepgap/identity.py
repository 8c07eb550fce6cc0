"""Token identity between runs: equal ids per request, or the first divergence, classified."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum

NEAR_TIE_LOGIT_MARGIN = 0.05  # bf16 logits of this model family carry ~1e-2 absolute error


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
class Identity:
    identical: bool
    requests_compared: int
    requests_differing: int
    only_in_a: tuple[int, ...]
    only_in_b: tuple[int, ...]
    first: Divergence | None
    differences: tuple[str, ...] = ()  # why the runs' tokens need not agree at all

    def describe(self) -> str:
        if self.identical:
            return f"identical ({self.requests_compared} requests)"
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


def _margin(margins: dict[int, list[float]], rid: int, position: int) -> float:
    values = margins.get(rid, [])
    return float(values[position]) if position < len(values) else math.nan


def compare_tokens(
    tokens_a: dict[int, list[int]],
    tokens_b: dict[int, list[int]],
    margins_a: dict[int, list[float]] | None = None,
    margins_b: dict[int, list[float]] | None = None,
    near_tie: float = NEAR_TIE_LOGIT_MARGIN,
    differences: tuple[str, ...] = (),
) -> Identity:
    """Compare per-request token ids of two runs.

    At the first differing position, a top-2 logit margin below `near_tie` in either run
    means the two runs' logits were within rounding of a tie there: a "numerical near-tie".
    Anything else — a clear winner that changed, or a sequence that is longer or shorter
    with equal tokens before — is a "logic error". Both readings assume the runs had the
    same model, weights and sampling; `differences` (stepgap.premise) says where they did
    not, and then a divergence is only "not comparable".
    """
    margins_a, margins_b = margins_a or {}, margins_b or {}
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
            m_a, m_b = _margin(margins_a, rid, position), _margin(margins_b, rid, position)
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
    identical = differing == 0 and not only_a and not only_b
    return Identity(identical, len(common), differing, only_a, only_b, first, differences)


def _verdict(tie: bool, differences: tuple[str, ...]) -> Verdict:
    if differences:
        return Verdict.NOT_COMPARABLE
    return Verdict.NEAR_TIE if tie else Verdict.LOGIC_ERROR
