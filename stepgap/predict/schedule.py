"""Which steps a schedule runs: the engine's own scheduler, driven by the replay's clock.

`simulate` runs `reference_engine.scheduler.Scheduler` (pure Python, no torch) over the
sync run's requests, in the engine's loop order for the schedule asked for, with each
step's time from `stepgap.predict.model` and its cost from `CostTable`. So the overlap
schedule's effects on *which* steps run come from the scheduler itself, not a rule of
thumb:
- a request that stops on a token (EOS, a stop id) is scheduled once more before the host
  sees its stop, and keeps its slot until that step is post-processed;
- a finished request's slot is free only once its last step was post-processed, which
  under overlap is after the next step was scheduled: a waiting request starts a step
  later (its TTFT grows by about a step);
- a request that arrives while step N runs is scheduled at the next schedule call, which
  under overlap is after N+1 was launched: its prefill waits one step behind the step in
  flight.
Token ids are not simulated: each request emits placeholder tokens and, if the sync run
saw it stop on a token, a stop token at the position where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from reference_engine.request import Request, SamplingParams
from reference_engine.scheduler import ScheduledStep, Scheduler
from stepgap.predict.costs import CostTable
from stepgap.predict.errors import PredictError
from stepgap.predict.inputs import RequestRecord, StepShape, SyncInputs
from stepgap.predict.model import (
    Clock,
    DeviceModel,
    DeviceRun,
    Schedule,
    StepCost,
    complete,
    launch,
    pause_until,
    settle,
)

FILLER_TOKEN, STOP_TOKEN = 1, 0
MAX_STEPS_FACTOR = 4  # a replay longer than this many times the sync run's steps is a bug


@dataclass(frozen=True)
class ReplayedStep:
    """One step the schedule ran: what it held and when the device ran it."""

    index: int
    shape: StepShape
    run: DeviceRun


@dataclass
class Simulation:
    """A replayed run: its steps, its requests (with token times), when the host ended."""

    schedule: Schedule
    steps: list[ReplayedStep] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    end_us: float = math.nan
    exact_costs: int = 0
    nearest_costs: int = 0


@dataclass
class _InFlight:
    step: ScheduledStep
    run: DeviceRun
    cost: StepCost


class _Outputs:
    """A step's results as the scheduler reads them: a token per slot."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self.margins = [0.0] * len(tokens)

    def logprob(self, slot: int) -> float:
        return 0.0

    def top_logprobs(self, slot: int, n: int) -> tuple[list[int], list[float]]:
        return [], []


def simulate(inputs: SyncInputs, schedule: Schedule, device: DeviceModel) -> Simulation:
    """Replay the sync run's requests under `schedule` (see the module docstring)."""
    scheduler, requests = _scheduler(inputs)
    costs, simulation = CostTable(inputs.steps), Simulation(schedule, requests=requests)
    stops = {r.request_id: r for r in inputs.requests}
    loop = _sync_iteration if schedule is Schedule.SYNC else _overlap_iteration
    state = _Loop(scheduler, costs, device, stops, simulation, Clock(inputs.start_us))
    limit = MAX_STEPS_FACTOR * len(inputs.steps) + 64
    while scheduler.has_unfinished or state.in_flight is not None:
        loop(state)
        if len(simulation.steps) > limit:
            raise PredictError(f"the replay ran past {limit} steps: the run is not replayable")
    _finish(state)
    return simulation


def _finish(state: _Loop) -> None:
    """Settle the last step's device times; note when the host ended and how steps were
    costed."""
    simulation, clock = state.simulation, state.clock
    if simulation.steps:
        last = simulation.steps[-1]
        final = (clock.last_start_us, clock.device_free_us)
        simulation.steps[-1] = replace(last, run=settle(last.run, final))
    simulation.end_us = clock.host_us
    simulation.exact_costs, simulation.nearest_costs = state.costs.exact, state.costs.nearest


@dataclass
class _Loop:
    scheduler: Scheduler
    costs: CostTable
    device: DeviceModel
    stops: dict[int, RequestRecord]
    simulation: Simulation
    clock: Clock
    in_flight: _InFlight | None = None


def _sync_iteration(state: _Loop) -> None:
    """The engine's `_sync_loop`: schedule, launch, wait, post-process."""
    step = state.scheduler.schedule(state.clock.host_us / 1e6)
    if step is None:
        _await_arrival(state)
        return
    launched = _launch(state, step)
    _complete(state, launched)


def _overlap_iteration(state: _Loop) -> None:
    """The engine's `_overlap_loop`: schedule and launch N+1, then wait for and
    post-process N."""
    step = state.scheduler.schedule(state.clock.host_us / 1e6)
    launched = _launch(state, step) if step is not None else None
    if state.in_flight is not None:
        _complete(state, state.in_flight)
    elif launched is None:
        _await_arrival(state)
    state.in_flight = launched


def _launch(state: _Loop, step: ScheduledStep) -> _InFlight:
    shape = StepShape(step.kind, len(step.decodes), step.prefill_tokens, len(step.chunks))
    cost = state.costs.cost(shape)
    state.clock, run, previous = launch(state.clock, cost, state.device)
    steps = state.simulation.steps
    if steps:
        steps[-1] = replace(steps[-1], run=settle(steps[-1].run, previous))
        if state.in_flight is not None:
            state.in_flight.run = steps[-1].run
    steps.append(ReplayedStep(step.index, shape, run))
    return _InFlight(step, run, cost)


def _complete(state: _Loop, launched: _InFlight) -> None:
    state.clock, tokens_us = complete(state.clock, launched.run, launched.cost, state.device)
    outputs = _outputs(launched.step, state.stops, len(state.scheduler.slots))
    state.scheduler.on_tokens(launched.step, outputs, tokens_us / 1e6, eos_token_id=-1)


def _await_arrival(state: _Loop) -> None:
    arrival = state.scheduler.next_arrival_s()
    if arrival is None:
        raise PredictError("the replay stalled: requests unfinished and none arriving")
    state.clock = pause_until(state.clock, arrival * 1e6)


def _outputs(step: ScheduledStep, stops: dict[int, RequestRecord], slots: int) -> _Outputs:
    """Placeholder tokens, and the stop token where the sync run saw a request stop."""
    tokens = [FILLER_TOKEN] * slots
    for request in step.requests:
        record = stops[request.request_id]
        at_stop = len(request.output) + 1 == record.output_tokens
        if record.stops_on_token and at_stop and not request.finished:
            tokens[request.slot] = STOP_TOKEN  # type: ignore[index]
    return _Outputs(tokens)


def _scheduler(inputs: SyncInputs) -> tuple[Scheduler, list[Request]]:
    engine = inputs.engine
    scheduler = Scheduler(
        engine.max_num_seqs,
        engine.max_model_len,
        engine.max_prefill_tokens,
        (),
        engine.max_num_batched_tokens,
    )
    requests = [_request(record) for record in inputs.requests]
    for request in requests:
        scheduler.add(request)
    return scheduler, requests


def _request(record: RequestRecord) -> Request:
    """A request of the same prompt length and stop as the sync run's (placeholder ids)."""
    max_tokens = record.max_tokens if record.stops_on_token else record.output_tokens
    params = SamplingParams(max_tokens, stop_token_ids=(STOP_TOKEN,), ignore_eos=True)
    return Request(
        record.request_id, [FILLER_TOKEN] * record.prompt_tokens, params, record.arrival_us / 1e6
    )
