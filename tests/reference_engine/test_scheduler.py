"""The scheduler alone: pure Python, fake tokens, no model."""

import pytest
from fake_results import EOS, complete

from reference_engine import ConfigError, Request, SamplingParams
from reference_engine.request import FinishReason
from reference_engine.scheduler import Scheduler, StepKind


def make(rid, prompt_len=3, arrival=0.0, **params):
    return Request(rid, list(range(10, 10 + prompt_len)), SamplingParams(**params), arrival)


def test_admits_into_free_slots_then_decodes():
    s = Scheduler(max_num_seqs=2, max_model_len=64, max_prefill_tokens=100)
    for i in range(3):
        s.add(make(i, max_tokens=3))
    step = s.schedule(0.0)
    assert step.kind is StepKind.PREFILL and [r.request_id for r in step.requests] == [0, 1]
    complete(s, step)
    step = s.schedule(0.0)
    assert step.kind is StepKind.DECODE and step.slots == [0, 1]
    assert len(s.waiting) == 1  # no free slot for request 2 yet


def test_arrivals_wait_for_their_time():
    s = Scheduler(2, 64, 100)
    s.add(make(0, arrival=0.5))
    assert s.schedule(0.1) is None
    assert s.next_arrival_s() == 0.5
    assert s.schedule(0.6).kind is StepKind.PREFILL


def test_never_schedules_past_max_tokens_even_in_flight():
    s = Scheduler(1, 64, 100)
    request = make(0, max_tokens=2)
    s.add(request)
    prefill = s.schedule(0.0)
    decode = s.schedule(0.0)  # launched before the prefill is post-processed (overlap)
    assert decode is not None and request.num_scheduled == 2
    assert s.schedule(0.0) is None  # a third token would exceed max_tokens
    complete(s, prefill)
    complete(s, decode)
    assert request.finish_reason is FinishReason.LENGTH and len(request.output) == 2


def test_lagged_stop_discards_extra_token_and_holds_slot():
    s = Scheduler(1, 64, 100)
    request = make(0, max_tokens=10)
    s.add(request)
    s.add(make(1, max_tokens=10))
    complete(s, s.schedule(0.0))  # prefill
    step_n = s.schedule(0.0)
    step_n1 = s.schedule(0.0)  # overlap: launched before step N's tokens are known
    assert complete(s, step_n, token=EOS) == [request]
    assert s.slots[0] is request  # step N+1 still reads the slot
    assert s.schedule(0.0) is None  # so request 1 cannot take it yet
    complete(s, step_n1, token=5)
    assert request.output == [7, EOS] and request.discarded == 1
    assert s.slots[0] is None
    assert s.schedule(0.0).requests[0].request_id == 1


def test_stop_token_and_ignore_eos():
    s = Scheduler(2, 64, 100)
    a, b = make(0, max_tokens=5, stop_token_ids=(9,)), make(1, max_tokens=5, ignore_eos=True)
    s.add(a)
    s.add(b)
    complete(s, s.schedule(0.0), token=EOS)
    assert a.finish_reason is FinishReason.EOS and not b.finished
    c = make(2, max_tokens=5, stop_token_ids=(9,))
    s.add(c)
    s.schedule(0.0)  # admits c
    finished = complete(s, s._make_step([c], []), token=9)
    assert finished == [c] and c.finish_reason is FinishReason.STOP_TOKEN


def test_prefill_token_budget_splits_admission():
    s = Scheduler(4, 64, max_prefill_tokens=5)
    for i in range(3):
        s.add(make(i, prompt_len=3))
    assert len(s.schedule(0.0).requests) == 1
    assert len(s.schedule(0.0).requests) == 1


def test_rejects_requests_that_do_not_fit():
    s = Scheduler(1, 16, 100)
    with pytest.raises(ConfigError, match="exceeds max_model_len"):
        s.add(make(0, prompt_len=10, max_tokens=6))
    with pytest.raises(ConfigError, match="max_num_seqs"):
        Scheduler(0, 16, 100)
