"""Tensor parallelism on CPU over gloo: each rank a process, rank 0 this test's process.

Sync and overlap agree on tokens and logprobs at TP 2 and TP 8; TP 2 gives TP 1's tokens
(or differs only at numerical near-ties, reported); a killed, hung or orphaned rank ends
the run with one line within its bound and leaves no process behind.
"""

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from reference_engine import MODES, Engine, EngineConfig, model_config
from reference_engine.parallel import leader
from reference_engine.parallel.failure import RankFailed
from reference_engine.parallel.watchdog import POLL_S
from stepgap.identity import Verdict, compare_tokens
from stepgap.mixes import expected_output, fresh, random_mix, with_stops, without_stops

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHUNKED = {"max_num_batched_tokens": 4 + 7}
FAMILIES = {"glm-4.5-air-tiny": CHUNKED, "ernie-4.5-tiny": {}}  # both prefill policies
SEEDS = range(3)
FP32_NEAR_TIE = 1e-3  # fp32 logits: a TP-2 sum order moves them by ~1e-6
GLM_TP8 = {"num_heads": 96, "num_kv_heads": 8, "num_experts": 128, "num_experts_per_tok": 8}
FAILURE_BOUND_S = POLL_S + 2.0 + 1.0  # watchdog poll + diagnosis grace + teardown slack


def make_engine(name, size, overrides=None, device="cpu", **options):
    config = model_config(name, **(overrides or {}))
    return Engine(
        EngineConfig(
            config, max_num_seqs=4, max_model_len=64, device=device, tensor_parallel=size, **options
        )
    )


def run(engine, requests, mode, on_step=None):
    output = engine.run(fresh(requests), mode, on_step)
    assert output.complete
    return {r.request_id: list(r.output) for r in output.requests}, output


def margins(output):
    return {r.request_id: list(r.margins) for r in output.requests}


def logprobs_of(output):
    return {r.request_id: (r.logprobs, r.top_logprobs) for r in output.requests}


def check_rank_tables(output, size):
    """Every follower sent a table with one row per step, timed on its own clock."""
    assert [t.rank for t in output.ranks] == list(range(1, size))
    for table in output.ranks:
        assert [s.step for s in table.steps] == list(range(len(output.steps)))
        assert all(s.device_end_us >= s.device_start_us for s in table.steps)
        assert set(table.host_waits) <= {"buffer_reuse", "synchronize"}
        assert {span.phase for span in table.phases} == {"receive", "wait", "prepare", "launch"}


def compare_to_tp1(single, sharded, label):
    """TP 1 vs TP N tokens: identical, or the first difference is a near-tie (printed)."""
    identity = compare_tokens(
        single[0], sharded[0], margins(single[1]), margins(sharded[1]), FP32_NEAR_TIE
    )
    print(f"{label}: TP 1 vs TP N: {identity.describe()}")
    assert identity.identical or identity.first.verdict is Verdict.NEAR_TIE, identity.describe()
    return identity


def check_schedules(engine, mix, reference, seed, size):
    """With stops: sync and overlap agree, each stop rule holds exactly (`reference`: the
    engine's tokens without stops). Returns the tokens overlap discarded past stops."""
    stopped = with_stops(mix, reference, seed)
    (sync, sync_run), (overlap, overlap_run) = (run(engine, stopped, m) for m in MODES)
    assert sync == overlap, f"seed {seed}: schedules disagree at TP {size}"
    assert logprobs_of(sync_run) == logprobs_of(overlap_run), f"seed {seed}: logprobs"
    eos = engine.config.model.eos_token_id
    for request in stopped:
        want = expected_output(request, reference[request.request_id], eos)
        assert sync[request.request_id] == want, f"seed {seed}: request {request}"
    check_rank_tables(sync_run, size)
    check_rank_tables(overlap_run, size)
    return sum(r.discarded for r in overlap_run.requests)


@pytest.mark.parametrize("name", FAMILIES)
def test_tp2_sync_and_overlap_agree_and_give_the_tokens_of_tp1(name):
    single = make_engine(name, 1, **FAMILIES[name])
    sharded = make_engine(name, 2, **FAMILIES[name])
    discarded = 0
    try:
        for seed in SEEDS:
            mix = random_mix(seed, single.config.model.vocab_size)
            one, two = (
                run(single, without_stops(mix), "sync"),
                run(sharded, without_stops(mix), "sync"),
            )
            compare_to_tp1(one, two, f"{name} seed {seed}")
            discarded += check_schedules(sharded, mix, two[0], seed, 2)
    finally:
        sharded.close()
        single.close()
    assert discarded > 0  # overlap ran past stops at TP 2 and threw those tokens away


def test_tp8_glm_air_layout_sync_and_overlap_agree():
    """GLM-4.5-Air's 96 q / 8 kv heads and 128 experts, split 8 ways (one kv head a rank)."""
    mix = random_mix(3, 512, num_requests=6, max_prompt=12, max_tokens=6)
    single = make_engine("glm-4.5-air-tiny", 1, GLM_TP8)
    one = run(single, mix, "sync")
    single.close()
    sharded = make_engine("glm-4.5-air-tiny", 8, GLM_TP8)
    try:
        runs = {mode: run(sharded, mix, mode) for mode in MODES}
        assert runs["sync"][0] == runs["overlap"][0]
        assert logprobs_of(runs["sync"][1]) == logprobs_of(runs["overlap"][1])
        check_rank_tables(runs["overlap"][1], 8)
        compare_to_tp1(one, runs["sync"], "glm TP 8")
    finally:
        sharded.close()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests run the kernels compiled")
def test_tp2_on_the_triton_kernels_in_the_interpreter_gives_the_torch_tokens():
    """The sharded shapes (I/2 experts, 3 q / 1 kv heads) through the Triton kernels, run
    by Triton's interpreter on every rank (the followers inherit TRITON_INTERPRET)."""
    pytest.importorskip("triton")
    mix = without_stops(random_mix(8, 512, num_requests=1, max_prompt=3, max_tokens=2))
    single = make_engine("glm-4.5-air-tiny", 1)
    expected, _ = run(single, mix, "sync")
    single.close()
    sharded = make_engine("glm-4.5-air-tiny", 2, kernels="triton")  # a prefill, a decode
    try:
        assert run(sharded, mix, "overlap")[0] == expected
    finally:
        sharded.close()


def follower_pids(engine):
    return [f.process.pid for f in engine.runner.team.followers]


def assert_gone(pids):
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} outlived its run"


def test_a_killed_rank_ends_the_run_with_one_line_within_the_bound():
    engine = make_engine("ernie-4.5-tiny", 2)
    pids, killed = follower_pids(engine), []

    def kill_at_step_five(record):
        if record.step.index == 5 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(time.monotonic())

    mix = without_stops(random_mix(1, 512, num_requests=8, spread_s=0))
    with pytest.raises(RankFailed) as failed:
        engine.run(mix, "overlap", kill_at_step_five)
    took = time.monotonic() - killed[0]
    with pytest.raises(RankFailed, match="cannot run again"):
        engine.run(mix, "sync")
    engine.close()
    message = str(failed.value)
    print(f"killed rank: error after {took * 1e3:.0f} ms: {message}")
    assert took < FAILURE_BOUND_S
    assert "\n" not in message and "rank 1 was killed by SIGKILL" in message
    assert not failed.value.output.complete and len(failed.value.output.steps) > 5
    assert_gone(pids)


def test_a_rank_killed_after_the_last_collective_still_fails_the_run():
    """The watchdog's diagnosis alone (no collective left to fail) ends the run too."""
    engine = make_engine("ernie-4.5-tiny", 2)
    pids = follower_pids(engine)
    mix = without_stops(random_mix(4, 512, num_requests=2, max_tokens=3, spread_s=0))

    def kill_after_the_last_step(record):
        if all(r.finished for r in mix):
            os.kill(pids[0], signal.SIGKILL)
            time.sleep(3 * POLL_S)  # the watchdog sees it before the run ends

    with pytest.raises(RankFailed, match="rank 1 was killed by SIGKILL") as failed:
        engine.run(mix, "overlap", kill_after_the_last_step)
    engine.close()
    assert not failed.value.output.complete
    assert_gone(pids)


def test_a_hung_rank_ends_the_run_after_the_hang_bound(monkeypatch):
    stalled = functools.partial(leader.start_leader, stall={1: 4})
    monkeypatch.setattr(leader, "start_leader", stalled)
    engine = make_engine("ernie-4.5-tiny", 2, tp_timeout_s=1.5)
    pids = follower_pids(engine)
    mix = without_stops(random_mix(2, 512, num_requests=6, spread_s=0))
    started = time.monotonic()
    with pytest.raises(RankFailed, match="rank 1 hung") as failed:
        engine.run(mix, "sync")
    took = time.monotonic() - started
    engine.close()
    print(f"hung rank: error after {took:.2f} s (bound 1.5 s): {failed.value}")
    assert 1.5 <= took < 1.5 + FAILURE_BOUND_S
    assert_gone(pids)


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from reference_engine import Engine, EngineConfig, model_config

    def main():
        config = EngineConfig(model_config("ernie-4.5-tiny"), max_num_seqs=2,
                              max_model_len=32, device="cpu", tensor_parallel=2)
        engine = Engine(config)
        print(*[f.process.pid for f in engine.runner.team.followers], flush=True)
        time.sleep(120)

    if __name__ == "__main__":
        main()
    """
)


def test_rank_zero_leaves_the_group_together_with_the_followers(monkeypatch):
    """NCCL's teardown waits for every rank: rank 0 must leave while the followers, told
    to stop, leave too, not after it has waited for them to exit (that hung on 2 H200s)."""
    from reference_engine.parallel import team

    calls = []
    leave, stop = team.leave_group, team.stop_all
    monkeypatch.setattr(team, "leave_group", lambda: calls.append("leave") or leave())
    monkeypatch.setattr(team, "stop_all", lambda f: calls.append(("reap", alive(f))) or stop(f))
    engine = make_engine("ernie-4.5-tiny", 2)
    followers = list(engine.runner.team.followers)
    engine.close()
    assert calls[0] == "leave" and calls[1][0] == "reap", calls
    assert not any(f.process.is_alive() for f in followers)


def alive(followers):
    return [f.process.is_alive() for f in followers]


def test_followers_die_with_a_killed_rank_zero(tmp_path):
    script = tmp_path / "rank0.py"
    script.write_text(ORPHAN_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    rank0 = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        pids = [int(pid) for pid in rank0.stdout.readline().split()]
    finally:
        rank0.kill()
        rank0.wait(10)
    assert pids
    deadline = time.monotonic() + 5.0
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_gone(pids)


def two_gpus():
    return torch.cuda.is_available() and torch.cuda.device_count() >= 2


@pytest.mark.cuda
@pytest.mark.skipif(not two_gpus(), reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_tp2_over_nccl_agrees_and_overlap_never_syncs_on_any_rank(name, host_syncs_raise):
    """TP 2 on two GPUs: all-reduces inside the decode graphs; sync and overlap agree; a
    warmed overlap run under CUDA sync-debug 'error' (every rank takes rank 0's mode)
    waits only on step outputs on rank 0 and only on buffer reuse on the follower."""
    engine = make_engine(name, 2, device="cuda", **FAMILIES[name])
    try:
        assert engine.runner.graphs is not None
        for seed in SEEDS:
            mix = random_mix(seed, engine.config.model.vocab_size)
            reference, _ = run(engine, without_stops(mix), "sync")
            check_schedules(engine, mix, reference, seed, 2)
        mix = without_stops(random_mix(2, engine.config.model.vocab_size, spread_s=0))
        run(engine, mix, "overlap")  # warm
        with host_syncs_raise():
            _, output = run(engine, mix, "overlap")
        assert output.host_waits["step_output"] == len(output.steps)
        (follower,) = output.ranks
        assert follower.host_waits.get("buffer_reuse", 0) <= len(output.steps)
        assert set(follower.host_waits) <= {"buffer_reuse", "synchronize"}
    finally:
        engine.close()
