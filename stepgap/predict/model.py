"""The timeline of a step sequence under the sync or the overlap schedule: pure functions.

Each step costs (all measured on a sync run, `stepgap.predict.inputs`):
- `prepare_host_us`: the host from the start of its loop iteration to its launch call
  (schedule + prepare, and the Python between them);
- `launch_call_us`: the launch call itself (one graph launch; or, for eager steps, every
  kernel launch: the device runs the first kernels while the host launches the rest);
- `finish_host_us`: the host from its wait returning to the next iteration's start
  (postprocess + output, and the loop's own time);
- `dispatch_us`: from its launch call starting to the device starting it, when the device
  sat idle waiting for it (the rest of the sync gap: launch latency, and the host's
  wake-up after the previous wait);
- `device_busy_us`: the device's time on it.

The rules (`reference_engine.engine`'s two loops):
- sync: iteration N schedules, prepares and launches N, waits for N, post-processes N;
- overlap: iteration N launches N, then waits for and post-processes N-1 (the step in
  flight), so the host works while the device runs;
- either way the device starts a step at the later of (the previous step's end + the
  inter-step floor) and (its launch call's start + its dispatch latency), and runs it for
  its busy time, ending no earlier than its launch call returned;
- a step's tokens reach the host when its wait returns (`now_s` of the engine's
  postprocess, a few µs later): token times, and so TTFT, TPOT and ITL, are wait ends.

The floor is the device's own minimum between two queued steps (a CUDA graph launched
behind a running one: ~3 µs on an H200; the CPU device's worker thread: ~100-150 µs on 2
cores): measured from an overlap run on the same device, or given (`FloorSource`).

The CPU device (`DeviceModel.host_blocks_device`): its stream is a Python worker thread
in the host's process, and both need the interpreter lock to go on — torch releases it
inside each op, not between ops. So host work (schedule, prepare, launch, postprocess,
output) done while the device is in the middle of an earlier step freezes the device for
as long; and a host whose wait returned while the device went on to its next step queued
behind (overlap) starts working only when that step starts (the worker's Python holds the
lock until then). Under sync the host never works beside an earlier step; under overlap
it always does: measured CPU steps run ~6 % longer under overlap. (A step's own launch
call beside its start is the same under both schedules: the sync busy times hold it.) A
GPU runs what is queued whatever the host does: no such term.

Assumptions: a step's device time does not otherwise depend on the schedule; the host's
phase times are the same whether or not the device runs beside them; the host's wake-up
after a wait is charged to the device's dispatch latency (the sync run cannot tell them
apart without a common clock), so predicted token times can be a few tens of µs early.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

DEFAULT_FLOOR_US = 5.0  # a graph queued behind a running one: 2.9-3.1 µs p50 on an H200


class Schedule(enum.Enum):
    """Which loop the replay follows."""

    SYNC = "sync"
    OVERLAP = "overlap"


def _check_non_negative(owner: object, **values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{type(owner).__name__}.{name} must be >= 0 µs, got {value!r}")


@dataclass(frozen=True)
class DeviceModel:
    """The device's side of the model: its floor between queued steps (µs), and whether
    host work freezes it (the CPU device: one interpreter lock for both)."""

    floor_us: float = DEFAULT_FLOOR_US
    host_blocks_device: bool = False

    def __post_init__(self) -> None:
        _check_non_negative(self, floor_us=self.floor_us)


@dataclass(frozen=True)
class StepCost:
    """What one step costs the host and the device (µs)."""

    prepare_host_us: float
    launch_call_us: float
    finish_host_us: float
    dispatch_us: float
    device_busy_us: float

    def __post_init__(self) -> None:
        _check_non_negative(
            self,
            prepare_host_us=self.prepare_host_us,
            launch_call_us=self.launch_call_us,
            finish_host_us=self.finish_host_us,
            dispatch_us=self.dispatch_us,
            device_busy_us=self.device_busy_us,
        )


@dataclass(frozen=True)
class Clock:
    """Where the replay stands: the host's time; the last launched step's device start
    and end (-inf before the first; the end moves while host work freezes the device);
    and whether the host paused for an arrival since the last launch (that gap is the
    workload's, not the engine's)."""

    host_us: float
    device_free_us: float = -math.inf
    last_start_us: float = -math.inf
    paused: bool = False
    launches: int = 0


@dataclass(frozen=True)
class DeviceRun:
    """One launched step on the device (µs on the host's clock)."""

    launch_index: int  # 0, 1, ... in launch order
    launch_end_us: float
    device_start_us: float
    device_end_us: float
    gap_before_us: float  # NaN for the first step
    after_idle: bool


def _host_begins(clock: Clock, device: DeviceModel) -> float:
    """When the host can start working: at once, unless the device shares its lock and
    is between two steps (its stream's Python holds the lock until the next step starts)."""
    pending = device.host_blocks_device and clock.device_free_us > clock.host_us
    return max(clock.host_us, clock.last_start_us) if pending else clock.host_us


def host_work(clock: Clock, duration_us: float, device: DeviceModel) -> Clock:
    """The host computes for `duration_us`; a device that shares its lock and is in the
    middle of a step is frozen meanwhile."""
    begin = _host_begins(clock, device)
    running = device.host_blocks_device and begin < clock.device_free_us
    frozen = duration_us if running else 0.0
    return replace(clock, host_us=begin + duration_us, device_free_us=clock.device_free_us + frozen)


def launch(
    clock: Clock, cost: StepCost, device: DeviceModel
) -> tuple[Clock, DeviceRun, tuple[float, float]]:
    """The host schedules, prepares and launches a step; the device runs it when free.
    Returns the new clock, the step's run, and the previous step's final (start, end)."""
    call_start = host_work(clock, cost.prepare_host_us, device).host_us
    clock = host_work(clock, cost.prepare_host_us + cost.launch_call_us, device)
    launch_end, previous_end = clock.host_us, clock.device_free_us
    start = max(previous_end + device.floor_us, call_start + cost.dispatch_us)
    end = max(start + cost.device_busy_us, launch_end)
    gap = start - previous_end if math.isfinite(previous_end) else math.nan
    run = DeviceRun(clock.launches, launch_end, start, end, gap, clock.paused)
    after = Clock(launch_end, end, start, paused=False, launches=clock.launches + 1)
    return after, run, (clock.last_start_us, previous_end)


def settle(run: DeviceRun, final: tuple[float, float]) -> DeviceRun:
    """`run` with the (start, end) `launch` returned for it once the next step launched."""
    return replace(run, device_start_us=final[0], device_end_us=final[1])


def complete(
    clock: Clock, run: DeviceRun, cost: StepCost, device: DeviceModel
) -> tuple[Clock, float]:
    """The host waits for `run` (its end as of now, if it is the last launched step) and
    post-processes it; returns the new clock and when its tokens reached the host."""
    last = run.launch_index == clock.launches - 1
    wait_end = max(clock.host_us, clock.device_free_us if last else run.device_end_us)
    clock = replace(clock, host_us=wait_end)
    tokens_us = _host_begins(clock, device)
    return host_work(clock, cost.finish_host_us, device), tokens_us


def pause_until(clock: Clock, time_us: float) -> Clock:
    """Nothing can run until `time_us` (the next arrival): the host sleeps."""
    return replace(clock, host_us=max(clock.host_us, time_us), paused=True)


@dataclass(frozen=True)
class ReplayedStep:
    """A step of a fixed sequence, replayed: its device run and its tokens' time."""

    run: DeviceRun
    tokens_us: float


def replay(
    costs: Sequence[StepCost], schedule: Schedule, device: DeviceModel, start_us: float = 0.0
) -> list[ReplayedStep]:
    """A fixed step sequence under `schedule` (no scheduler: every step is given)."""
    clock, runs, tokens = Clock(start_us), list[DeviceRun](), list[float]()
    for index, cost in enumerate(costs):
        clock, run, previous = launch(clock, cost, device)
        if runs:
            runs[-1] = settle(runs[-1], previous)
        runs.append(run)
        if schedule is Schedule.SYNC:
            clock, at = complete(clock, run, cost, device)
            tokens.append(at)
        elif index:
            clock, at = complete(clock, runs[index - 1], costs[index - 1], device)
            tokens.append(at)
    if schedule is Schedule.OVERLAP and costs:
        clock, at = complete(clock, runs[-1], costs[-1], device)
        tokens.append(at)
    if runs:
        runs[-1] = settle(runs[-1], (clock.last_start_us, clock.device_free_us))
    return [ReplayedStep(run, at) for run, at in zip(runs, tokens, strict=True)]
