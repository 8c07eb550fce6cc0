"""The scheduler's replay: the extra step of a request whose stop is seen late, slots freed
a step late, arrivals seen a step late — on hand-built runs (all steps cost the same)."""

import math

from reference_engine.scheduler import StepKind
from stepgap.predict.inputs import EngineShape, RequestRecord, StepShape, SyncInputs, SyncStep
from stepgap.predict.model import DeviceModel, Schedule, StepCost
from stepgap.predict.outcome import requests_table
from stepgap.predict.schedule import simulate

COST = StepCost(300.0, 20.0, 200.0, 30.0, 5000.0)  # host 0.52 ms, device 5 ms per step
PREFILL = StepShape(StepKind.PREFILL, 0, 4, 1)
DECODE = StepShape(StepKind.DECODE, 1, 0, 0)
GPU = DeviceModel(floor_us=5.0)


def inputs(requests, slots=1, shapes=(PREFILL, DECODE)):
    steps = tuple(SyncStep(i, shape, COST, math.nan, False) for i, shape in enumerate(shapes))
    engine = EngineShape(slots, 64, 4096, None)
    return SyncInputs("hand-built", steps, tuple(requests), engine, 0, 0.0, "cuda")


def request(rid, output, stops_on_token=False, arrival_us=0.0, max_tokens=8):
    return RequestRecord(rid, arrival_us, 4, output, max_tokens, stops_on_token)


def test_a_stop_seen_late_costs_one_extra_step_and_the_next_request_a_step():
    run = inputs([request(0, 3, stops_on_token=True), request(1, 2)])
    sync = simulate(run, Schedule.SYNC, GPU)
    overlap = simulate(run, Schedule.OVERLAP, GPU)
    # sync: prefill r0, 2 decodes (the 3rd token is the stop), prefill r1, 1 decode
    assert [s.shape.kind for s in sync.steps] == [
        StepKind.PREFILL,
        *[StepKind.DECODE] * 2,
        StepKind.PREFILL,
        StepKind.DECODE,
    ]
    # overlap: r0 runs one decode past its stop before the host sees it
    assert len(overlap.steps) == len(sync.steps) + 1
    assert overlap.steps[3].shape.kind is StepKind.DECODE
    r0 = overlap.requests[0]
    assert len(r0.output) == 3 and r0.discarded == 1
    assert [len(r.output) for r in overlap.requests] == [len(r.output) for r in sync.requests]


def test_a_length_stop_costs_no_extra_step():
    run = inputs([request(0, 3), request(1, 2)])
    sync = simulate(run, Schedule.SYNC, GPU)
    overlap = simulate(run, Schedule.OVERLAP, GPU)
    assert len(overlap.steps) == len(sync.steps) == 5
    assert overlap.requests[0].discarded == 0


def test_an_arrival_during_a_step_waits_one_more_step_under_overlap():
    # Two slots. r1 arrives while r0's prefill runs: sync schedules it at the next step;
    # overlap already launched that step, so r1's prefill waits one step behind it.
    run = inputs(
        [request(0, 6), request(1, 3, arrival_us=2000.0)],
        slots=2,
        shapes=(PREFILL, DECODE, StepShape(StepKind.PREFILL, 0, 4, 1)),
    )
    sync = simulate(run, Schedule.SYNC, GPU)
    overlap = simulate(run, Schedule.OVERLAP, GPU)
    assert sync.steps[1].shape.kind is StepKind.PREFILL  # r1's prefill comes next
    assert overlap.steps[1].shape.kind is StepKind.DECODE  # r0's decode was launched first
    assert overlap.steps[2].shape.kind is StepKind.PREFILL
    ttft = {
        name: requests_table(sim).set_index("request_id").ttft_ms
        for name, sim in (("sync", sync), ("overlap", overlap))
    }
    # about one device step (5 ms) later: the step in flight
    assert 4.0 < ttft["overlap"][1] - ttft["sync"][1] < 6.0


def test_sync_replay_of_a_steady_run_gives_its_measured_gap():
    run = inputs([request(0, 5)])
    sync = simulate(run, Schedule.SYNC, GPU)
    # gap = finish (200) + prepare (300) + dispatch (30), as measured in a sync run
    assert [s.run.gap_before_us for s in sync.steps[1:]] == [530.0] * 4
    overlap = simulate(run, Schedule.OVERLAP, GPU)
    assert [s.run.gap_before_us for s in overlap.steps[1:]] == [5.0] * 4
