"""Host-phase clocks: where the host spends each step, for gap attribution.

The engine brackets each host phase with `Probe.phase`. The base probe only reads the
host clock; stepgap's instrumentation subclasses it to add NVTX ranges.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

PHASES = ("schedule", "prepare", "launch", "wait", "postprocess", "output")
IDLE = "idle"  # waiting for the next request to arrive: the workload's time, not the engine's
PROFILER = "profiler"  # starting or stopping a profiler: the measurement's time


_now = time.perf_counter_ns


class PhaseSpan(NamedTuple):
    """One host phase of one step, in host-clock ns since the run started."""

    step: int
    phase: str
    start_ns: int
    end_ns: int


class Probe:
    """Records `PhaseSpan`s; `enabled=False` makes every phase a no-op.

    `on_phase`, when set, is called with the phase name as each phase starts, enabled or
    not: the engine hooks its schedule jitter (verification only) in there. Phases run on
    the engine's hot path (six per step, in sync mode each on the critical path): they are
    plain objects with `__enter__`/`__exit__`, not generator context managers.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.origin_ns = _now()
        self.on_phase: Callable[[str], None] | None = None
        self._records: list[tuple[int, str, int, int]] = []  # (step, phase, start, end) ns
        self._phases: dict[str, _Phase] = {}
        self._iteration = _Range(self, "step")

    @property
    def spans(self) -> list[PhaseSpan]:
        """Every phase recorded since the last reset, on the run's host clock."""
        origin = self.origin_ns
        return [PhaseSpan(st, ph, a - origin, b - origin) for st, ph, a, b in self._records]

    def reset(self) -> None:
        self._records = []
        self.origin_ns = _now()

    def now_ns(self) -> int:
        return _now() - self.origin_ns

    def phase(self, name: str, step: int) -> _Phase:
        """`with probe.phase(name, step):` times that host phase of that step. Phases of
        one name never nest, so each name has one reusable context object."""
        phase = self._phases.get(name)
        if phase is None:
            phase = self._phases[name] = _Phase(self, name)
        phase.step = step
        return phase

    def iteration(self) -> _Range:
        """One loop iteration of the engine (a `step` range around its phases)."""
        return self._iteration

    def push(self, name: str) -> None:
        """Open a named range (subclasses: NVTX)."""

    def pop(self) -> None:
        """Close the innermost range."""


class _Range:
    """A named range (NVTX) while enabled."""

    __slots__ = ("name", "probe")

    def __init__(self, probe: Probe, name: str) -> None:
        self.probe, self.name = probe, name

    def __enter__(self) -> None:
        if self.probe.enabled:
            self.probe.push(self.name)

    def __exit__(self, *exc_info: object) -> None:
        if self.probe.enabled:
            self.probe.pop()


class _Phase:
    """A host phase: its range, and its span on the host clock."""

    __slots__ = ("name", "probe", "start_ns", "step")

    def __init__(self, probe: Probe, name: str) -> None:
        self.probe, self.name, self.step, self.start_ns = probe, name, 0, 0

    def __enter__(self) -> None:
        probe = self.probe
        if probe.on_phase is not None:
            probe.on_phase(self.name)
        if probe.enabled:
            self.start_ns = _now()
            probe.push(self.name)

    def __exit__(self, *exc_info: object) -> None:
        probe = self.probe
        if probe.enabled:
            probe.pop()
            probe._records.append((self.step, self.name, self.start_ns, _now()))
