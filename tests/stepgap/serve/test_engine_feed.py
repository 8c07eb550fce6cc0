"""The engine hooks the server needs: `Engine.run(feed=)` takes requests while it runs, and
`Scheduler.abort` cancels one (its slot freed once no launched step reads it)."""

import pytest

from reference_engine import Engine, EngineConfig, FinishReason
from stepgap.workloads import load_workload

WORKLOAD = load_workload("smoke").with_overrides(num_requests=6, output_len=6, arrival="all")


@pytest.fixture(scope="module")
def engine():
    config = EngineConfig(
        model=WORKLOAD.model_config(),
        max_num_seqs=4,
        max_model_len=WORKLOAD.max_model_len,
        device="cpu",
    )
    engine = Engine(config)
    yield engine
    engine.close()


class ScriptedFeed:
    """Hands over one request per poll, cancels `cancel_id` once it has `cancel_after`
    tokens, and closes when it has nothing left to give and the engine waits."""

    logprobs = False

    def __init__(self, requests, cancel_id=None, cancel_after=2):
        self.queue = list(requests)
        self.by_id = {r.request_id: r for r in requests}
        self.cancel_id, self.cancel_after = cancel_id, cancel_after
        self.open = True
        self.polls = self.waits = 0

    def poll(self, scheduler, wait):
        self.polls += 1
        if self.queue:
            scheduler.add(self.queue.pop(0))
        victim = self.by_id.get(self.cancel_id)
        if victim is not None and len(victim.output) >= self.cancel_after:
            scheduler.abort(victim)
            self.cancel_id = None
        if wait and not self.queue:
            self.waits += 1
            self.open = False


@pytest.mark.parametrize("mode", ["sync", "overlap"])
def test_a_fed_run_emits_what_a_plain_run_emits(engine, mode):
    plain = engine.run(WORKLOAD.requests(), mode)
    fed = WORKLOAD.requests()
    feed = ScriptedFeed(fed)
    output = engine.run([], mode, feed=feed)
    assert output.complete and feed.waits == 1
    assert {r.request_id: r.output for r in fed} == {r.request_id: r.output for r in plain.requests}
    assert all(r.finish_reason is FinishReason.LENGTH for r in fed)


@pytest.mark.parametrize("mode", ["sync", "overlap"])
def test_an_aborted_request_stops_frees_its_slot_and_leaves_the_others_alone(engine, mode):
    plain = {r.request_id: r.output for r in engine.run(WORKLOAD.requests(), mode).requests}
    fed = WORKLOAD.requests()
    output = engine.run([], mode, feed=ScriptedFeed(fed, cancel_id=1))
    assert output.complete  # the run ended: no slot stayed taken
    victim = fed[1]
    assert victim.finish_reason is FinishReason.ABORT
    assert 2 <= len(victim.output) < WORKLOAD.output_len
    assert victim.output == plain[1][: len(victim.output)]
    assert all(r.output == plain[r.request_id] for r in fed if r is not victim)


def test_aborting_a_waiting_request_takes_it_out_of_the_queue(engine):
    fed = WORKLOAD.with_overrides(num_requests=8).requests()  # 8 requests, 4 slots

    class CancelLast(ScriptedFeed):
        def poll(self, scheduler, wait):
            while self.queue:
                scheduler.add(self.queue.pop(0))
            if self.cancel_id is not None:
                scheduler.abort(self.by_id[self.cancel_id])
                self.cancel_id = None
            if wait:
                self.open = False

    engine.run([], "overlap", feed=CancelLast(fed, cancel_id=7))
    assert fed[7].finish_reason is FinishReason.ABORT and fed[7].output == []
    assert all(len(r.output) == WORKLOAD.output_len for r in fed[:7])


def test_without_a_feed_a_run_needs_its_requests_up_front(engine):
    output = engine.run([], "sync")
    assert output.complete and output.steps == []
