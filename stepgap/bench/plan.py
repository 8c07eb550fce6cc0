"""The requests a benchmark sends: a stepgap workload's request stream, and when to send it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from reference_engine.config import ConfigError
from stepgap.workloads import Workload


@dataclass(frozen=True)
class BenchRequest:
    """One request as the client sends it; `arrival_s`: when, from the benchmark's start."""

    request_id: int
    prompt: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    ignore_eos: bool
    arrival_s: float


def bench_requests(workload: Workload, request_rate: float | None = None) -> list[BenchRequest]:
    """The workload's requests (same ids, prompts and seeds as `stepgap run` uses); sent at
    the workload's arrival times, or at `request_rate` per second (Poisson, seeded by the
    workload; `inf`: all at once), as `vllm bench serve --request-rate` does."""
    requests = workload.requests()
    arrivals = [r.arrival_s for r in requests]
    if request_rate is not None:
        arrivals = poisson_arrivals(len(requests), request_rate, workload.seed)
    return [
        BenchRequest(
            request_id=r.request_id,
            prompt=tuple(r.prompt),
            max_tokens=r.params.max_tokens,
            temperature=r.params.temperature,
            top_k=r.params.top_k,
            top_p=r.params.top_p,
            seed=r.params.seed,
            ignore_eos=r.params.ignore_eos,
            arrival_s=arrival,
        )
        for r, arrival in zip(requests, arrivals, strict=True)
    ]


def poisson_arrivals(count: int, rate: float, seed: int) -> list[float]:
    """Arrival times of `count` requests at `rate` per second (the first at 0)."""
    if not rate > 0:
        raise ConfigError(f"request rate must be > 0 (inf: all at once), got {rate}")
    if math.isinf(rate):
        return [0.0] * count
    rng, now, times = random.Random(seed), 0.0, []
    for i in range(count):
        now += rng.expovariate(rate) if i else 0.0
        times.append(now)
    return times
