"""What rank 0 tells the other ranks, and how a follower is started. Plain picklable
records: no tensor ever goes through the host channel, only the bytes of the pinned tables.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any

from reference_engine.faults import Fault
from reference_engine.model_runner import PreparedStep, Segment
from reference_engine.scheduler import StepKind


@dataclass(frozen=True)
class RunStart:
    """A run begins: plant these faults, capture these graphs, start the clock.
    `sync_debug`: rank 0's CUDA sync debug mode (0 off, 1 warn, 2 error), which every rank
    takes for the run, so that a no-sync test checks all of them."""

    faults: tuple[Fault, ...]
    timed: bool
    logprobs: bool
    mixed_steps: bool
    sync_debug: int = 0


@dataclass(frozen=True)
class StepPlan:
    """One step: what rank 0's runner prepared, and the bytes of its pinned input tables
    (`inputs`: the whole (S, INPUT_WORDS) table; `prompt_ids`: its first prompt_tokens)."""

    prepared: PreparedStep
    timed: bool
    inputs: bytes
    prompt_ids: bytes


@dataclass(frozen=True)
class RunEnd:
    """The run is over: drain, and send this run's step table back."""


@dataclass(frozen=True)
class Stop:
    """The engine closes: leave the group and exit."""


Message = RunStart | StepPlan | RunEnd | Stop
_STEP = "step"  # the first item of a plan on the wire


def to_wire(message: Message) -> object:
    """What goes through the pipe: a step as a plain tuple (pickled in ~2 µs, against
    ~17 µs for the records: this is on rank 0's critical path every step), else itself."""
    if not isinstance(message, StepPlan):
        return message
    p = message.prepared
    segments = tuple(astuple(s) for s in p.segments)
    return (_STEP, p.kind.value, p.parity, p.results, segments, p.prompt_tokens,
            message.timed, message.inputs, message.prompt_ids)  # fmt: skip


def from_wire(item: object) -> Message:
    """The message `to_wire` sent."""
    if not (isinstance(item, tuple) and item and item[0] == _STEP):
        return item  # type: ignore[return-value]
    _, kind, parity, results, segments, prompt_tokens, timed, inputs, prompt_ids = item
    segs = tuple(Segment(*s) for s in segments)
    prepared = PreparedStep(StepKind(kind), parity, results, segs, prompt_tokens)
    return StepPlan(prepared, timed, inputs, prompt_ids)


@dataclass(frozen=True)
class Timeouts:
    """Every bound of a tensor-parallel run, in seconds.

    `startup_s`: a follower starts, joins the group and builds its shard. `hang_s`: a
    follower that has not launched rank 0's latest step this long after rank 0 did is hung
    (the run fails). Collectives time out after `hang_s + 30`, so the watchdog's diagnosis
    comes first. A follower that exits is seen at once (its process sentinel)."""

    startup_s: float = 600.0
    hang_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.startup_s, self.hang_s) <= 0:
            raise ValueError("tensor-parallel timeouts must be positive")

    @property
    def collective_s(self) -> float:
        return self.hang_s + 30.0


@dataclass(frozen=True)
class FollowerSpec:
    """Everything a follower process needs to build its rank: the engine's config (an
    `EngineConfig`), its rank, where the group meets, the device kind rank 0 resolved, and
    `stall_at_step` (testing only: the follower stops launching at that step, a hang)."""

    engine_config: Any
    rank: int
    port: int
    device_kind: str
    timeouts: Timeouts
    stall_at_step: int | None = None
