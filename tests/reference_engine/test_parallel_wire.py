"""Rank 0's messages survive the pipe: a step as a compact tuple, the rest as records."""

import pickle

import numpy as np

from reference_engine.faults import Fault
from reference_engine.model_runner import PreparedStep, Segment
from reference_engine.parallel.plan import RunEnd, RunStart, StepPlan, Stop, from_wire, to_wire
from reference_engine.scheduler import StepKind


def through_the_pipe(message):
    return from_wire(pickle.loads(pickle.dumps(to_wire(message))))


def test_every_message_round_trips():
    inputs = np.arange(32, dtype=np.int64).tobytes()
    mixed = PreparedStep(StepKind.MIXED, 1, 0, (Segment(2, 0, 5, 7, True),), 5)
    messages = [
        StepPlan(mixed, True, inputs, np.arange(5, dtype=np.int64).tobytes()),
        StepPlan(PreparedStep(StepKind.DECODE, 0, 0), False, inputs, b""),
        RunStart((Fault.UNDERSIZED_RING,), True, True, False, 2),
        RunEnd(),
        Stop(),
    ]
    for message in messages:
        assert through_the_pipe(message) == message


def test_a_step_travels_as_a_plain_tuple():
    plan = StepPlan(PreparedStep(StepKind.PREFILL, 1, 1), True, b"", b"")
    assert type(to_wire(plan)) is tuple
