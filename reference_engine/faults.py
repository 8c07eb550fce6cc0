"""Planted faults: named, deliberate bugs in the overlap loop, for testing verifiers.

DEBUG / TEST OPTION, OFF BY DEFAULT. `EngineConfig(faults=(Fault.NO_STOP_LAG,))` makes the
engine's overlap loop reproduce one bug class that overlap schedules of real engines have
shipped. Each fault is a small change to the real loop at the place where that bug lives,
not a separate fake engine; the sync loop always runs clean, so it stays the reference.
`stepgap verify --fault NAME` checks that the verifier catches each of them. Never plant a
fault in a run you measure or publish.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from reference_engine.config import ConfigError


class Fault(enum.StrEnum):
    """The bug classes the engine can plant in its overlap loop (see `FAULT_INFO`)."""

    STALE_PINNED_BUFFER = "stale-pinned-buffer"
    MISSING_EVENT_WAIT = "missing-event-wait"
    EARLY_SLOT_REUSE = "early-slot-reuse"
    NO_STOP_LAG = "no-stop-lag"
    OFF_BY_ONE_MAX_TOKENS = "off-by-one-max-tokens"
    PLACEHOLDER_TOKEN = "placeholder-token"
    UNDERSIZED_RING = "undersized-ring"
    CHUNK_POSITION_OFF_BY_ONE = "chunk-position-off-by-one"
    LOGPROBS_OTHER_BUFFER = "logprobs-other-buffer"


@dataclass(frozen=True)
class FaultInfo:
    """What a planted fault changes, where, and which real bug it mirrors."""

    fault: Fault
    change: str  # the change to the loop, in one sentence
    where: str  # module.function holding the change
    race: bool  # a data race: whether it shows depends on host/device timing
    seen_in: str  # a real engine's report of this bug class
    needs_chunks: bool = False  # shows only where a prompt runs in several chunks


FAULT_INFO: dict[Fault, FaultInfo] = {
    info.fault: info
    for info in (
        FaultInfo(
            Fault.STALE_PINNED_BUFFER,
            "host input buffers are single- instead of double-buffered: preparing step N+1 "
            "overwrites the pinned inputs step N's host-to-device copy has not read yet",
            "model_runner.ModelRunner.prepare",
            True,
            "vLLM #24527 (pinned host buffer reused before its copy landed)",
        ),
        FaultInfo(
            Fault.MISSING_EVENT_WAIT,
            "post-processing reads a step's pinned outputs without waiting on its event",
            "engine.Engine._complete",
            True,
            "mini-sglang #58 (event never waited on)",
        ),
        FaultInfo(
            Fault.EARLY_SLOT_REUSE,
            "a finished request's slot is freed while a launched step still reads it, and "
            "post-processing maps tokens through the current slot table, not the step record",
            "scheduler.Scheduler.on_tokens",
            False,
            "SGLang #18803 (slot handed to a new request while the in-flight step read it)",
        ),
        FaultInfo(
            Fault.NO_STOP_LAG,
            "the token a stopped request produces in the lagged step is appended, not discarded",
            "scheduler.Scheduler.on_tokens",
            False,
            "the discarded lag token leaking into outputs",
        ),
        FaultInfo(
            Fault.OFF_BY_ONE_MAX_TOKENS,
            "the scheduler launches a request while num_scheduled <= max_tokens (not <)",
            "scheduler.Scheduler.schedule",
            False,
            "vLLM #27922 (a step scheduled past max_tokens)",
        ),
        FaultInfo(
            Fault.PLACEHOLDER_TOKEN,
            "a prefill leaves a placeholder id (0), not its sampled token, in the "
            "device-resident next-token buffer the first decode embeds",
            "model_runner.ModelRunner._prefill_chunk",
            False,
            "vLLM #32303 (placeholder ids reaching the embedding)",
        ),
        FaultInfo(
            Fault.UNDERSIZED_RING,
            "the ring of in-flight step results (pinned output buffers) has 1 entry where 2 "
            "are in flight: step N+1's results land over step N's before N is post-processed",
            "model_runner.ModelRunner.prepare",
            True,
            "sglang-jax #1487 (future-token ring wrapped and corrupted tokens)",
        ),
        FaultInfo(
            Fault.CHUNK_POSITION_OFF_BY_ONE,
            "a prompt chunk after the first starts one position late: its tokens' rotary "
            "positions and cache rows shift by one",
            "model_runner.ModelRunner._pack_chunks",
            False,
            "chunked-prefill position bookkeeping (vLLM #4904: wrong positions in chunks)",
            needs_chunks=True,
        ),
        FaultInfo(
            Fault.LOGPROBS_OTHER_BUFFER,
            "post-processing reads a step's logprobs from the other pinned output buffer "
            "(the previous step's), while its tokens come from the right one",
            "model_runner.ModelRunner.outputs",
            False,
            "overlap schedules copying logprobs apart from tokens (FastDeploy's follow-ups "
            "to the overlap schedule added logprobs separately)",
        ),
    )
}


def parse_faults(names: Iterable[str | Fault]) -> tuple[Fault, ...]:
    """Faults from their names (`stale-pinned-buffer`, `stale_pinned_buffer`, ...)."""
    faults = []
    for name in names:
        key = str(name).strip().lower().replace("_", "-")
        try:
            faults.append(Fault(key))
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise ConfigError(f"unknown fault {name!r}; choose from {known}") from None
    return tuple(dict.fromkeys(faults))
