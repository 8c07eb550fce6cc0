"""Host-phase clocks: where the host spends each step, for gap attribution.

The engine brackets each host phase with `Probe.phase`. The base probe only reads the
host clock; stepgap's instrumentation subclasses it to add NVTX ranges.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PHASES = ("schedule", "prepare", "launch", "wait", "postprocess", "output")
IDLE = "idle"  # waiting for the next request to arrive: the workload's time, not the engine's
PROFILER = "profiler"  # starting or stopping a profiler: the measurement's time


@dataclass(frozen=True)
class PhaseSpan:
    """One host phase of one step, in host-clock ns since the run started."""

    step: int
    phase: str
    start_ns: int
    end_ns: int


class Probe:
    """Records `PhaseSpan`s; `enabled=False` makes every phase a no-op.

    `on_phase`, when set, is called with the phase name as each phase starts, enabled or
    not: the engine hooks its schedule jitter (verification only) in there.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.spans: list[PhaseSpan] = []
        self.origin_ns = time.perf_counter_ns()
        self.on_phase: Callable[[str], None] | None = None

    def reset(self) -> None:
        self.spans = []
        self.origin_ns = time.perf_counter_ns()

    def now_ns(self) -> int:
        return time.perf_counter_ns() - self.origin_ns

    @contextmanager
    def phase(self, name: str, step: int) -> Iterator[None]:
        if self.on_phase is not None:
            self.on_phase(name)
        if not self.enabled:
            yield
            return
        start = time.perf_counter_ns()
        self.push(name)
        try:
            yield
        finally:
            self.pop()
            end = time.perf_counter_ns()
            self.spans.append(PhaseSpan(step, name, start - self.origin_ns, end - self.origin_ns))

    @contextmanager
    def iteration(self) -> Iterator[None]:
        """One loop iteration of the engine (a `step` range around its phases)."""
        if not self.enabled:
            yield
            return
        self.push("step")
        try:
            yield
        finally:
            self.pop()

    def push(self, name: str) -> None:
        """Open a named range (subclasses: NVTX)."""

    def pop(self) -> None:
        """Close the innermost range."""
