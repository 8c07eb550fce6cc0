"""Per-token logprobs, read from the engine's output where the engine provides them.

The plug-in point between the engine and the HTTP responses: `SamplingParams.logprobs`
asks the engine for the sampled token's logprob and the top n, and `Request.logprobs` /
`Request.top_logprobs` hold them per emitted token. An engine without those fields still
serves: requests may ask for `logprobs`, and get them back as nulls (the OpenAI shape,
no values), never an error. The engine's top-2 logit margin stays internal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reference_engine.request import Request, SamplingParams

ENGINE_HAS_LOGPROBS = "logprobs" in {f.name for f in dataclasses.fields(SamplingParams)}


@dataclass(frozen=True)
class TokenLogprobs:
    """One emitted token's logprob and the top alternatives (token id, logprob), best first."""

    logprob: float
    top: tuple[tuple[int, float], ...]


def sampling_fields(logprobs: int | None) -> dict[str, Any]:
    """The `SamplingParams` fields that ask the engine for `logprobs` (none if it can't)."""
    return {"logprobs": logprobs} if ENGINE_HAS_LOGPROBS and logprobs is not None else {}


def read(request: Request, index: int) -> TokenLogprobs | None:
    """The engine's logprobs of the request's `index`-th emitted token, if it recorded them."""
    values = getattr(request, "logprobs", None)
    tops = getattr(request, "top_logprobs", None)
    if not values or index >= len(values):
        return None
    top = tuple(tops[index]) if tops and index < len(tops) else ()
    return TokenLogprobs(float(values[index]), tuple((int(t), float(v)) for t, v in top))
