"""The timeline rules on hand-built step sequences, each checked against a timeline worked
out by hand (µs throughout)."""

import itertools
import math

import pytest

from stepgap.predict.model import DeviceModel, Schedule, StepCost, replay

GPU = DeviceModel(floor_us=0.0)


def cost(prepare, finish, busy, launch=0.0, dispatch=0.0):
    return StepCost(prepare, launch, finish, dispatch, busy)


def gaps(steps):
    return [s.run.gap_before_us for s in steps[1:]]


def starts(steps):
    return [s.run.device_start_us for s in steps]


def periods(steps):
    begins = starts(steps)
    return [b - a for a, b in itertools.pairwise(begins)]


def test_host_3ms_device_5ms_overlap_gap_is_the_floor():
    # step 0 starts when launched at 1000 and ends at 6000; every later step is launched
    # while the device is busy, so it starts at the previous end + the floor.
    steps = replay([cost(1000, 2000, 5000)] * 6, Schedule.OVERLAP, DeviceModel(floor_us=10))
    assert starts(steps) == [1000, 6010, 11020, 16030, 21040, 26050]
    assert gaps(steps) == [10] * 5
    no_floor = replay([cost(1000, 2000, 5000)] * 6, Schedule.OVERLAP, GPU)
    assert periods(no_floor) == [5000] * 5


def test_host_7ms_device_5ms_overlap_leaves_a_2ms_gap():
    # step 0: launched at 3000, ends 8000. Step 1 launched at 6000 starts at 8000. Wait
    # for step 0 ends at 8000, finish 4000 -> 12000; step 2 launched at 15000: gap 2000.
    steps = replay([cost(3000, 4000, 5000)] * 6, Schedule.OVERLAP, GPU)
    assert starts(steps)[:3] == [3000, 8000, 15000]
    assert gaps(steps)[1:] == [2000] * 4


def test_sync_gap_is_all_host_work_plus_dispatch():
    steps = replay([cost(3000, 4000, 5000, dispatch=50)] * 4, Schedule.SYNC, GPU)
    assert gaps(steps) == [4000 + 3000 + 50] * 3
    # tokens reach the host when the wait returns: at each step's end
    assert [s.tokens_us for s in steps] == [s.run.device_end_us for s in steps]


def test_overlap_tokens_arrive_when_the_wait_for_their_step_returns():
    steps = replay([cost(1000, 2000, 5000)] * 3, Schedule.OVERLAP, GPU)
    assert [s.tokens_us for s in steps] == [6000, 11000, 16000]


def test_a_long_launch_call_bounds_the_step_end():
    # the device may start at the launch call's start, but cannot end before it returned
    steps = replay([cost(100, 0, 500, launch=2000)], Schedule.SYNC, GPU)
    assert steps[0].run.device_start_us == 100
    assert steps[0].run.device_end_us == 2100


def test_cpu_device_is_frozen_by_host_work_beside_it():
    # One interpreter lock: under overlap each step runs while the host does finish(N-1)
    # (2000, once the step started) and prepare(N+1) (1000): period = 5000 + 3000 + floor.
    cpu = DeviceModel(floor_us=100, host_blocks_device=True)
    steps = replay([cost(1000, 2000, 5000)] * 6, Schedule.OVERLAP, cpu)
    assert periods(steps)[1:] == [8100] * 4
    assert gaps(steps) == [100] * 5
    # under sync the host never works beside a step: the coupling changes nothing
    coupled = replay([cost(1000, 2000, 5000)] * 4, Schedule.SYNC, cpu)
    plain = replay([cost(1000, 2000, 5000)] * 4, Schedule.SYNC, DeviceModel(floor_us=100))
    assert [s.run for s in coupled] == [s.run for s in plain]


def test_first_gap_is_missing_and_costs_are_checked():
    steps = replay([cost(1, 1, 1)], Schedule.OVERLAP, GPU)
    assert math.isnan(steps[0].run.gap_before_us)
    with pytest.raises(ValueError, match="device_busy_us"):
        cost(1, 1, -1)
    with pytest.raises(ValueError, match="floor_us"):
        DeviceModel(floor_us=math.nan)
