"""Randomized request mixes and the exact outputs their stop rules allow.

Used by the engine tests and by verification: a mix exercises staggered arrivals, varied
prompt lengths, greedy and sampled requests, max_tokens=1, stop ids and EOS mid-batch, and
more requests than slots.
"""

from __future__ import annotations

import dataclasses
import random

from reference_engine import Request, SamplingParams


def random_mix(
    seed: int,
    vocab_size: int,
    num_requests: int = 12,
    max_prompt: int = 24,
    max_tokens: int = 24,
    spread_s: float = 0.02,
) -> list[Request]:
    """A seeded mix with no stop ids yet (see `with_stops`); about a quarter of the
    requests arrive together at t=0, the rest spread over `spread_s` seconds."""
    rng = random.Random(seed)
    requests = []
    for i in range(num_requests):
        sampled = rng.random() < 0.5
        params = SamplingParams(
            max_tokens=1 if rng.random() < 0.15 else rng.randint(2, max_tokens),
            temperature=rng.choice([0.7, 1.0, 1.3]) if sampled else 0.0,
            top_k=rng.choice([0, 5, 40]) if sampled else 0,
            top_p=rng.choice([1.0, 0.9, 0.6]) if sampled else 1.0,
            seed=rng.randrange(2**40),
            ignore_eos=rng.random() < 0.3,
            logprobs=rng.choice([None, None, 0, 1, 5]),
        )
        arrival = 0.0 if rng.random() < 0.25 else rng.uniform(0, spread_s)
        prompt = [rng.randrange(3, vocab_size) for _ in range(rng.randint(1, max_prompt))]
        requests.append(Request(i, prompt, params, arrival_s=arrival))
    return requests


def fresh(requests: list[Request]) -> list[Request]:
    """Unrun copies of `requests` (a request object records its own progress)."""
    return [Request(r.request_id, list(r.prompt), r.params, r.arrival_s) for r in requests]


def with_stops(
    requests: list[Request], reference: dict[int, list[int]], seed: int
) -> list[Request]:
    """Give about half the requests a stop id taken from the middle of their own
    reference output, so they are sure to stop mid-generation."""
    rng = random.Random(seed ^ 0x5EED)
    out = []
    for r in fresh(requests):
        tokens = reference[r.request_id]
        if len(tokens) >= 3 and rng.random() < 0.5:
            stop = tokens[rng.randrange(1, len(tokens) - 1)]
            r.params = dataclasses.replace(r.params, stop_token_ids=(stop,))
        out.append(r)
    return out


def common_token(reference: dict[int, list[int]]) -> int:
    """The most frequent generated token: as EOS it stops many requests mid-batch."""
    counts: dict[int, int] = {}
    for tokens in reference.values():
        for t in tokens[1:]:
            counts[t] = counts.get(t, 0) + 1
    return max(counts, key=lambda t: (counts[t], -t))


def expected_output(request: Request, unstopped: list[int], eos_token_id: int) -> list[int]:
    """The output `request` must produce, given its stop-free output `unstopped`: cut after
    the first stop id or EOS (unless ignored), and at max_tokens."""
    p = request.params
    out = []
    for token in unstopped[: p.max_tokens]:
        out.append(token)
        if token in p.stop_token_ids or (token == eos_token_id and not p.ignore_eos):
            break
    return out


def without_stops(requests: list[Request]) -> list[Request]:
    """Copies that ignore EOS and have no stop ids: they run to max_tokens."""
    out = fresh(requests)
    for r in out:
        r.params = dataclasses.replace(r.params, stop_token_ids=(), ignore_eos=True)
    return out
