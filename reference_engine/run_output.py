"""What the engine's loops hand around and give back: each launched step's record, the
run's output, the feed of requests a server adds while a run is going, and Ctrl-C."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from reference_engine.device import Marker
from reference_engine.engine_config import Mode
from reference_engine.model_runner import PreparedStep
from reference_engine.request import Request
from reference_engine.scheduler import ScheduledStep, Scheduler


@dataclass
class StepRecord:
    """One launched step; device times (µs from the run's origin marker) are filled in
    once the run is drained."""

    step: ScheduledStep
    prepared: PreparedStep
    timed: bool  # its first and last device op stamp the device clock (instrumentation on)
    done: Marker  # the output copy landed: what the host waits on
    device_start_us: float = float("nan")
    device_end_us: float = float("nan")


@dataclass
class RunOutput:
    """What one run of the engine produced."""

    mode: Mode
    requests: list[Request]
    steps: list[StepRecord] = field(default_factory=list)
    wall_s: float = 0.0
    host_waits: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    origin_host_ns: int = 0  # host clock (probe ns) when the device clock origin was read
    emitted: list[tuple[int, int]] = field(default_factory=list)  # (step, request id) per token
    ranks: list = field(default_factory=list)  # TP: ranks 1.. step tables (parallel.rank_tables)


class RequestFeed(Protocol):
    """Requests that arrive while the engine runs (a server's queue): `Engine.run(feed=)`.

    The engine polls it on its own thread: once per loop iteration before scheduling
    (`wait=False`), and, when nothing can run, with `wait=True` (block until a request
    comes or the feed closes). `poll` hands new requests to `scheduler.add` and cancelled
    ones to `scheduler.abort`. The run returns once `open` is False and all it took in
    finished. `logprobs`: requests may ask for logprobs, so every step computes them.
    """

    open: bool
    logprobs: bool

    def poll(self, scheduler: Scheduler, wait: bool) -> None: ...


class RunInterrupted(Exception):
    """Raised from `Engine.run` on Ctrl-C; `.output` holds what was measured so far."""

    def __init__(self, output: RunOutput) -> None:
        super().__init__("run interrupted")
        self.output = output
