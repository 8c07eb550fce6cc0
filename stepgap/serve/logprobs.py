"""Per-token logprobs, read from the engine's output.

The plug-in point between the engine and the HTTP responses: `SamplingParams.logprobs`
asks the engine for the sampled token's logprob and the top n, and `Request.logprobs` /
`Request.top_logprobs` hold them per emitted token (empty for a request that did not ask).
The engine's top-2 logit margin stays internal.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_engine.request import Request


@dataclass(frozen=True)
class TokenLogprobs:
    """One emitted token's logprob and the top alternatives (token id, logprob), best first."""

    logprob: float
    top: tuple[tuple[int, float], ...]


def read(request: Request, index: int) -> TokenLogprobs | None:
    """The engine's logprobs of the request's `index`-th emitted token, if it recorded them."""
    values, tops = request.logprobs, request.top_logprobs
    if not values or index >= len(values):
        return None
    top = tuple(tops[index]) if tops and index < len(tops) else ()
    return TokenLogprobs(float(values[index]), tuple((int(t), float(v)) for t, v in top))
