"""One follower's measurements of one run, sent to rank 0 when the run ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_engine.probe import PhaseSpan

FOLLOWER_PHASES = ("receive", "wait", "prepare", "launch")


@dataclass(frozen=True)
class RankStep:
    """One step on one rank: its device interval, µs from that rank's own clock origin
    (each rank's gaps are differences on its own clock; no clocks are compared)."""

    step: int
    device_start_us: float
    device_end_us: float


@dataclass(frozen=True)
class RankSteps:
    """A follower's run: its steps (rank 0's step indices), host phases (`receive`: waiting
    for rank 0's plan; `wait`: for the buffers' previous step; `prepare`: writing the plan
    into its pinned tables; `launch`), and its host waits by reason."""

    rank: int
    steps: tuple[RankStep, ...]
    phases: tuple[PhaseSpan, ...] = ()
    host_waits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"a follower's rank is >= 1, got {self.rank}")
        unknown = {span.phase for span in self.phases} - set(FOLLOWER_PHASES)
        if unknown:
            raise ValueError(f"unknown follower phase(s) {sorted(unknown)}")
