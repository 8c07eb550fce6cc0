"""Planted faults and schedule jitter: off by default, each a real change at its own place,
active in the overlap loop only."""

import pytest
from fake_results import EOS, complete

from reference_engine import ConfigError, Engine, EngineConfig, Request, SamplingParams
from reference_engine import model_config as preset
from reference_engine.device import make_device
from reference_engine.faults import FAULT_INFO, Fault, parse_faults
from reference_engine.jitter import (
    JITTER_LEVELS,
    PRESET_STEP_US,
    Jitter,
    ScheduleJitter,
    jitter_level,
)
from reference_engine.model_runner import PLACEHOLDER_TOKEN
from reference_engine.probe import Probe
from reference_engine.scheduler import Scheduler
from stepgap.mixes import fresh, random_mix


def make(rid, max_tokens=10, **params):
    return Request(rid, [10, 11, 12], SamplingParams(max_tokens=max_tokens, **params))


def engine(faults=(), jitter=None, probe=None):
    config = EngineConfig(
        preset("ernie-4.5-tiny"),
        max_num_seqs=4,
        max_model_len=64,
        device="cpu",
        faults=faults,
        jitter=jitter,
    )
    return Engine(config, probe)


def test_faults_are_off_by_default_and_parsed_by_name():
    assert EngineConfig(preset("ernie-4.5-tiny")).faults == ()
    assert EngineConfig(preset("ernie-4.5-tiny")).jitter is None
    assert parse_faults(["no_stop_lag", "No-Stop-Lag", Fault.UNDERSIZED_RING]) == (
        Fault.NO_STOP_LAG,
        Fault.UNDERSIZED_RING,
    )
    config = EngineConfig(preset("ernie-4.5-tiny"), faults=("early-slot-reuse",))
    assert config.faults == (Fault.EARLY_SLOT_REUSE,)
    with pytest.raises(ConfigError, match="unknown fault 'torn-write'"):
        EngineConfig(preset("ernie-4.5-tiny"), faults=("torn-write",))
    assert set(FAULT_INFO) == set(Fault)


def test_off_by_one_schedules_one_step_past_max_tokens():
    for faults, launches in (((), 2), ((Fault.OFF_BY_ONE_MAX_TOKENS,), 3)):
        s = Scheduler(1, 64, 100, faults)
        request = make(0, max_tokens=2)
        s.add(request)
        steps = [step for step in (s.schedule(0.0) for _ in range(4)) if step]
        assert len(steps) == launches and request.num_scheduled == launches
        for step in steps:
            complete(s, step)
        assert len(request.output) == 2  # the extra token is discarded: only the step leaks


def test_early_slot_reuse_hands_the_lagged_token_to_the_new_owner():
    s = Scheduler(1, 64, 100, (Fault.EARLY_SLOT_REUSE,))
    first, second = make(0), make(1)
    s.add(first)
    s.add(second)
    complete(s, s.schedule(0.0))  # prefill of request 0
    step_n, step_n1 = s.schedule(0.0), s.schedule(0.0)
    complete(s, step_n, token=EOS)
    assert s.slots[0] is None  # freed although step N+1 still reads the slot
    prefill = s.schedule(0.0)
    assert [r.request_id for r in prefill.requests] == [1]
    complete(s, step_n1, token=5)  # request 0's lagged row, mapped through the slot table
    assert second.output == [5] and first.discarded == 0
    assert s.emitted[-1] == (step_n1.index, 1)


def test_no_stop_lag_keeps_the_lagged_token_but_stays_stopped():
    s = Scheduler(1, 64, 100, (Fault.NO_STOP_LAG,))
    request = make(0)
    s.add(request)
    complete(s, s.schedule(0.0))
    step_n, step_n1 = s.schedule(0.0), s.schedule(0.0)
    complete(s, step_n, token=EOS)
    complete(s, step_n1, token=5)
    assert request.output == [7, EOS, 5] and request.discarded == 0
    assert request.finished and s.schedule(0.0) is None


def test_buffer_faults_collapse_the_parities_and_placeholder_reaches_next_tokens():
    eng = engine()
    try:
        s = Scheduler(4, 64, 100)
        s.add(make(0))
        steps = [s.schedule(0.0), s.schedule(0.0)]
        clean = [eng.runner.prepare(step) for step in steps]
        assert [(p.parity, p.results) for p in clean] == [(0, 0), (1, 1)]
        eng.runner.plant_faults((Fault.STALE_PINNED_BUFFER,))
        assert [(eng.runner.prepare(step).parity) for step in steps] == [0, 0]
        eng.runner.plant_faults((Fault.UNDERSIZED_RING,))
        assert [eng.runner.prepare(step).results for step in steps] == [0, 0]
        eng.runner.plant_faults((Fault.PLACEHOLDER_TOKEN,))
        prefill = eng.runner.prepare(steps[0])
        eng.runner.next_tokens.fill_(PLACEHOLDER_TOKEN + 7)
        eng.device.submit(lambda: eng.runner.execute(prefill))
        eng.device.synchronize()
        assert eng.runner.next_tokens[0].item() == PLACEHOLDER_TOKEN
    finally:
        eng.close()


def test_faults_touch_the_overlap_loop_only():
    eng = engine((Fault.MISSING_EVENT_WAIT, Fault.PLACEHOLDER_TOKEN))
    clean = engine()
    try:
        mix = random_mix(4, 512, num_requests=6)
        faulty_sync = eng.run(fresh(mix), "sync")
        reference = clean.run(fresh(mix), "sync")
        assert [r.output for r in faulty_sync.requests] == [r.output for r in reference.requests]
        overlap = eng.run(fresh(mix), "overlap")
        assert overlap.host_waits.get("step_output", 0) == 0  # never waited on a step
        assert [r.output for r in overlap.requests] != [r.output for r in reference.requests]
    finally:
        eng.close()
        clean.close()


def test_jitter_levels_and_validation():
    assert jitter_level("off") is None
    assert jitter_level("heavy") == JITTER_LEVELS["heavy"]
    with pytest.raises(ConfigError, match="unknown jitter level"):
        jitter_level("wild")
    with pytest.raises(ConfigError, match="host_prob"):
        Jitter(host_prob=1.5)
    with pytest.raises(ConfigError, match="device_max_us"):
        Jitter(device_max_us=-1)
    with pytest.raises(ConfigError, match="quiet_phases"):
        Jitter(quiet_phases=-1)
    with pytest.raises(ConfigError, match="jitter must be a Jitter"):
        EngineConfig(preset("ernie-4.5-tiny"), jitter="heavy")


def test_jitter_stretches_with_a_slow_device_step_and_never_shrinks():
    heavy = JITTER_LEVELS["heavy"]
    assert heavy.stretched_to(PRESET_STEP_US / 10) == heavy  # a fast GPU step: as tuned
    assert heavy.stretched_to(float("nan")) == heavy  # untimed steps: as tuned
    slow = heavy.with_seed(4).stretched_to(4 * PRESET_STEP_US)
    assert (slow.host_max_us, slow.device_max_us) == (4 * 8000.0, 4 * 5000.0)
    assert (slow.seed, slow.host_prob, slow.device_prob) == (4, heavy.host_prob, 0.3)
    assert heavy.stretched_to(1e9).host_max_us == 1e6  # capped where Jitter's check is


def test_jitter_draws_are_seeded_and_stall_the_device_only_at_launch(monkeypatch):
    pauses = []
    monkeypatch.setattr("reference_engine.jitter.time.sleep", pauses.append)
    device = make_device("cpu")
    submitted = []
    monkeypatch.setattr(device, "submit", submitted.append)
    jitter = ScheduleJitter(Jitter(seed=3, host_prob=0.5, device_prob=1.0, quiet_phases=0), device)
    phases = ["schedule", "prepare", "launch", "wait", "postprocess", "output"] * 5

    def draws():
        pauses.clear()
        submitted.clear()
        jitter.reset()
        for phase in phases:
            jitter.at_phase(phase)
        return list(pauses), len(submitted)

    first, stalls = draws()
    assert draws() == (first, stalls)  # reset replays the same perturbations
    assert stalls == phases.count("launch")  # device_prob=1: one stall per launch
    assert 0 < len(first) < len(phases)
    assert all(0 <= s <= 5e-3 for s in first)
    device.close()


def test_engine_hooks_jitter_into_the_probe_and_keeps_tokens():
    probe = Probe(enabled=False)
    eng = engine(jitter=JITTER_LEVELS["light"].with_seed(5), probe=probe)
    clean = engine()
    try:
        assert probe.on_phase == eng.jitter.at_phase
        mix = random_mix(6, 512, num_requests=6)
        jittered = eng.run(fresh(mix), "overlap")
        calm = clean.run(fresh(mix), "overlap")
        assert [r.output for r in jittered.requests] == [r.output for r in calm.requests]
        assert len(jittered.emitted) == sum(len(r.output) for r in jittered.requests)
    finally:
        eng.close()
        clean.close()


def test_after_a_device_stall_the_host_runs_ahead_without_pausing(monkeypatch):
    """The races that need the device behind show only if no host pause closes them."""
    pauses = []
    monkeypatch.setattr("reference_engine.jitter.time.sleep", pauses.append)
    device = make_device("cpu")
    stalls = []
    monkeypatch.setattr(device, "submit", lambda work: stalls.append(len(pauses)))
    jitter = ScheduleJitter(Jitter(host_prob=1.0, device_prob=1.0, quiet_phases=4), device)
    for phase in ["launch", "wait", "postprocess", "output", "schedule", "prepare", "wait"]:
        jitter.at_phase(phase)
    assert stalls == [0] and len(pauses) == 2  # 4 quiet phase starts, then a pause each
    device.close()
