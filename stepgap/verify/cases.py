"""What verification runs: request mixes (workloads) x seeds x model families.

A case is one (family, workload, seed): a seeded `stepgap.mixes.random_mix` of that
workload's shape, given stop ids and a common EOS from its own stop-free run, so requests
stop mid-batch by every rule. Each workload stresses the overlap loop differently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from reference_engine import ConfigError, Request
from stepgap.mixes import random_mix

FAMILIES: tuple[str, ...] = ("glm-4.5-air-tiny", "ernie-4.5-tiny")


@dataclass(frozen=True)
class VerifyWorkload:
    """The shape of a verification mix: how many requests, slots, and how long."""

    name: str
    description: str
    num_requests: int
    slots: int
    max_prompt: int
    max_tokens: int
    spread_s: float  # arrivals spread over this many seconds (0: all at once)
    max_model_len: int = 64
    max_num_batched_tokens: int | None = None  # set: chunked prefill, mixed steps

    def __post_init__(self) -> None:
        if min(self.num_requests, self.slots, self.max_prompt) < 1 or self.max_tokens < 2:
            raise ConfigError(f"verify workload {self.name}: sizes must be positive")
        if self.max_prompt + self.max_tokens > self.max_model_len - 1:
            raise ConfigError(f"verify workload {self.name}: prompts + outputs exceed the cache")
        if self.spread_s < 0:
            raise ConfigError(f"verify workload {self.name}: negative arrival spread")

    def requests(self, seed: int, vocab_size: int) -> list[Request]:
        return random_mix(
            seed,
            vocab_size,
            num_requests=self.num_requests,
            max_prompt=self.max_prompt,
            max_tokens=self.max_tokens,
            spread_s=self.spread_s,
        )


WORKLOADS: dict[str, VerifyWorkload] = {
    w.name: w
    for w in (
        VerifyWorkload(
            "mixed",
            "12 requests on 4 slots, staggered arrivals: admissions while others decode",
            12,
            4,
            24,
            24,
            0.02,
        ),
        VerifyWorkload(
            "burst",
            "16 requests at once on 4 slots: every finish hands its slot straight over",
            16,
            4,
            16,
            20,
            0.0,
        ),
        VerifyWorkload(
            "single-slot",
            "6 requests on 1 slot, prompts in chunks of 5: each request's lagged step meets "
            "the next one's prefill",
            6,
            1,
            12,
            12,
            0.005,
            max_num_batched_tokens=1 + 5,
        ),
        VerifyWorkload(
            "chunked",
            "12 requests on 4 slots, prompts in chunks of 7: decode rows and prompt chunks "
            "share steps, long prompts span several",
            12,
            4,
            24,
            16,
            0.01,
            max_num_batched_tokens=4 + 7,
        ),
        VerifyWorkload(
            "wide",
            "24 short requests on 8 slots: many stops per step",
            24,
            8,
            12,
            12,
            0.01,
        ),
    )
}


def workload(name: str) -> VerifyWorkload:
    if name not in WORKLOADS:
        raise ConfigError(f"unknown verify workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return WORKLOADS[name]


@dataclass(frozen=True)
class Case:
    """One seeded verification run: a model family and a workload's mix for `seed`."""

    family: str
    workload: str
    seed: int

    @property
    def jitter_seed(self) -> int:
        """The schedule-jitter seed of this case: stable across processes and faults."""
        return zlib.crc32(f"{self.family}/{self.workload}/{self.seed}".encode())

    def label(self) -> str:
        return f"{self.family}/{self.workload}/seed {self.seed}"


def expand_cases(
    families: tuple[str, ...], workloads: tuple[str, ...], seeds: tuple[int, ...]
) -> list[Case]:
    """Every (family, workload, seed), seeds innermost."""
    return [Case(f, w, s) for f in families for w in workloads for s in seeds]
