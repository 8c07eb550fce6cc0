"""The fast CI subset of `stepgap verify`: the clean engine passes every check under heavy
jitter, and every planted fault is caught in a few seeded runs by the check expected to see
it first. A change that breaks the overlap loop fails the first test; one that blinds a
check fails a fault's test."""

import pytest

from reference_engine import Engine, EngineConfig
from reference_engine import model_config as preset
from reference_engine.faults import FAULT_INFO, Fault
from reference_engine.jitter import JITTER_LEVELS
from stepgap.mixes import fresh, random_mix
from stepgap.verify.cases import Case
from stepgap.verify.runner import Verifier, median_step_us

HEAVY = JITTER_LEVELS["heavy"]
ERNIE, GLM = "ernie-4.5-tiny", "glm-4.5-air-tiny"


@pytest.fixture(scope="module")
def verifier():
    shared = Verifier(device="cpu")
    yield shared
    shared.close()


def test_clean_engine_passes_every_check_under_jitter(verifier):
    cases = [Case(GLM, "mixed", 11), Case(ERNIE, "burst", 11), Case(ERNIE, "single-slot", 11)]
    for case in cases:
        result = verifier.run_case(case, None, HEAVY)
        assert result.passed, f"{case.label()}: {result.first}"
        step_us = verifier.reference(case).step_us
        assert result.jitter == HEAVY.stretched_to(step_us).with_seed(case.jitter_seed)


def test_the_step_time_jitter_stretches_to_is_what_the_device_took():
    """Checked against the run's host clock: in a sync run the device works one step at a
    time, so its steps' device times add up to less than the run's wall time."""
    engine = Engine(EngineConfig(preset(ERNIE), max_num_seqs=2, max_model_len=64, device="cpu"))
    try:
        output = engine.run(fresh(random_mix(5, 512, num_requests=4)), "sync")
    finally:
        engine.close()
    durations = sorted(r.device_end_us - r.device_start_us for r in output.steps)
    assert durations[0] > 0 and sum(durations) < output.wall_s * 1e6
    assert durations[0] <= median_step_us(output) <= durations[-1]


# (fault, cases, checks allowed to fire first). Races get three cases: one catch suffices.
SUBSET = [
    (Fault.EARLY_SLOT_REUSE, [Case(ERNIE, "burst", 0)], {"step_membership"}),
    (Fault.NO_STOP_LAG, [Case(GLM, "mixed", 0)], {"no_token_after_stop"}),
    (Fault.OFF_BY_ONE_MAX_TOKENS, [Case(ERNIE, "single-slot", 0)], {"positions"}),
    (Fault.PLACEHOLDER_TOKEN, [Case(GLM, "single-slot", 0)], {"identical_tokens"}),
    (
        Fault.STALE_PINNED_BUFFER,
        [Case(ERNIE, "mixed", s) for s in (0, 1, 2)],
        {"identical_tokens", "token_count", "positions", "no_token_after_stop"},
    ),
    (
        Fault.MISSING_EVENT_WAIT,
        [Case(GLM, "burst", s) for s in (0, 1, 2)],
        {"identical_tokens", "token_count", "no_token_after_stop"},
    ),
    (
        Fault.UNDERSIZED_RING,
        [Case(ERNIE, "burst", s) for s in (0, 1, 2)],
        {"identical_tokens", "token_count", "no_token_after_stop"},
    ),
    (Fault.CHUNK_POSITION_OFF_BY_ONE, [Case(GLM, "chunked", 0)], {"identical_tokens"}),
    (Fault.LOGPROBS_OTHER_BUFFER, [Case(ERNIE, "chunked", 0)], {"identical_logprobs"}),
]


@pytest.mark.parametrize(
    ("fault", "cases", "first_checks"), SUBSET, ids=[str(fault) for fault, _, _ in SUBSET]
)
def test_planted_fault_is_caught(verifier, fault, cases, first_checks):
    caught = []
    for case in cases:
        result = verifier.run_case(case, fault, HEAVY)
        if not result.passed:
            caught.append(result)
            if not FAULT_INFO[fault].race:
                continue
            break  # a race: one catch is the proof; spare the time
    assert caught, f"{fault} went unnoticed in {len(cases)} runs"
    if not FAULT_INFO[fault].race:
        assert len(caught) == len(cases)  # deterministic faults show every time
    first = caught[0].first
    assert first.check in first_checks, first
    assert first.diagnosis and first.step is not None


def test_every_fault_is_in_the_subset():
    assert {fault for fault, _, _ in SUBSET} == set(Fault)


@pytest.mark.cuda
def test_cuda_bf16_graphs_clean_passes_and_every_fault_is_caught():
    verifier = Verifier(device="cuda")
    light = JITTER_LEVELS["light"]
    try:
        for case in (Case(GLM, "mixed", 11), Case(ERNIE, "burst", 11)):
            result = verifier.run_case(case, None, light)
            assert result.passed, f"{case.label()}: {result.first}"
        assert verifier.device_info["cuda_graphs_captured"]
        assert verifier.device_info["dtype"] == "bfloat16"
        for fault, cases, _ in SUBSET:
            results = [verifier.run_case(case, fault, light) for case in cases]
            assert any(not r.passed for r in results), f"{fault} went unnoticed on CUDA"
    finally:
        verifier.close()
