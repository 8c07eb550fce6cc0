"""Sync and overlap on the CPU engine: identical tokens, exact stop rules, real overlap."""

import collections
import dataclasses
import gc
import itertools
import statistics

import pytest
import torch

from reference_engine import MODES, ConfigError, Engine, EngineConfig, model_config
from stepgap.mixes import (
    common_token,
    expected_output,
    fresh,
    random_mix,
    with_stops,
    without_stops,
)

FAMILIES = ["glm-4.5-air-tiny", "ernie-4.5-tiny"]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make_engine(name, device="cpu", eos=None, slots=4, **kwargs):
    config = model_config(name) if eos is None else model_config(name, eos_token_id=eos)
    return Engine(
        EngineConfig(config, max_num_seqs=slots, max_model_len=64, device=device, **kwargs)
    )


def run_tokens(engine, requests, mode):
    output = engine.run(fresh(requests), mode)
    assert output.complete
    return {r.request_id: r.output for r in output.requests}, output


CHUNKED = {"max_num_batched_tokens": 4 + 7}  # 4 slots: prompts in chunks of 7 tokens


def logprobs_of(output):
    return {r.request_id: (r.logprobs, r.top_logprobs) for r in output.requests}


def check_family(name, seeds, device="cpu", **engine_options):
    """For each seed: sync and overlap agree on tokens and logprobs, and each request obeys
    its stop rule exactly. Returns the step kinds the overlap runs took."""
    plain = make_engine(name, device, **engine_options)
    discarded, kinds = 0, collections.Counter()
    for seed in seeds:
        mix = random_mix(seed, plain.config.model.vocab_size)
        unstopped, _ = run_tokens(plain, without_stops(mix), "sync")
        eos = common_token(unstopped)
        stopped = with_stops(mix, unstopped, seed)
        engine = make_engine(name, device, eos=eos, **engine_options)
        results = {mode: run_tokens(engine, stopped, mode) for mode in MODES}
        (sync, sync_run), (overlap, overlap_run) = results["sync"], results["overlap"]
        assert sync == overlap, f"{name} seed {seed}: schedules disagree"
        assert logprobs_of(sync_run) == logprobs_of(overlap_run), f"{name} seed {seed}: logprobs"
        for request in stopped:
            want = expected_output(request, unstopped[request.request_id], eos)
            assert sync[request.request_id] == want, f"{name} seed {seed} request {request}"
        discarded += sum(r.discarded for r in overlap_run.requests)
        kinds.update(record.step.kind.value for record in overlap_run.steps)
        engine.close()
    plain.close()
    assert discarded > 0  # overlap really ran past stops and threw the extra tokens away
    return kinds


@pytest.mark.parametrize("name", FAMILIES)
def test_sync_and_overlap_agree_over_twenty_seeds(name):
    check_family(name, range(20))


@pytest.mark.parametrize("name", FAMILIES)
def test_chunked_prefill_mixes_steps_and_keeps_tokens_and_logprobs_identical(name):
    kinds = check_family(name, range(20), **CHUNKED)
    assert kinds["mixed"] > 0 and kinds["prefill"] > 0 and kinds["decode"] > 0, kinds


def test_a_prompt_in_chunks_gives_the_tokens_of_the_whole_prompt():
    whole, chunked = make_engine("glm-4.5-air-tiny"), make_engine("glm-4.5-air-tiny", **CHUNKED)
    mix = without_stops(random_mix(4, whole.config.model.vocab_size, max_prompt=40))
    assert max(len(r.prompt) for r in mix) > 3 * 7  # some prompts take four chunks or more
    for mode in MODES:
        expected, whole_run = run_tokens(whole, mix, mode)
        got, chunked_run = run_tokens(chunked, mix, mode)
        assert got == expected
        for a, b in zip(whole_run.requests, chunked_run.requests, strict=True):
            assert len(a.logprobs) == len(b.logprobs)
            assert all(
                abs(x - y) <= 1e-4 * max(1.0, abs(x))
                for x, y in zip(a.logprobs, b.logprobs, strict=True)
            )


def test_overlap_with_chunked_prefill_waits_only_on_step_outputs():
    engine = make_engine("ernie-4.5-tiny", **CHUNKED)
    _, output = run_tokens(engine, random_mix(6, engine.config.model.vocab_size), "overlap")
    assert output.host_waits == {"step_output": len(output.steps), "synchronize": 1}


def test_same_seed_same_tokens_other_seed_other_tokens():
    engine = make_engine("ernie-4.5-tiny")
    mix = random_mix(3, engine.config.model.vocab_size)
    first, _ = run_tokens(engine, mix, "overlap")
    again, _ = run_tokens(engine, mix, "overlap")
    assert first == again
    reseeded = fresh(mix)
    for r in reseeded:
        r.params = dataclasses.replace(r.params, seed=r.params.seed + 1)
    other, _ = run_tokens(engine, reseeded, "overlap")
    sampled = [r.request_id for r in mix if r.params.temperature > 0 and r.params.max_tokens > 3]
    assert sampled and any(first[i] != other[i] for i in sampled)
    greedy = [r.request_id for r in mix if r.params.temperature == 0]
    assert all(first[i] == other[i] for i in greedy)


def test_overlap_waits_only_on_step_outputs():
    engine = make_engine("glm-4.5-air-tiny")
    mix = random_mix(5, engine.config.model.vocab_size)
    _, output = run_tokens(engine, mix, "overlap")
    # One wait per step for its output copy; the only other wait is the run's final drain.
    assert output.host_waits == {"step_output": len(output.steps), "synchronize": 1}


def decode_worker_idle_us(output):
    steps = output.steps
    return statistics.median(
        b.device_start_us - a.device_end_us
        for a, b in itertools.pairwise(steps)
        if b.step.kind.value == "decode"
    )


def test_overlap_really_overlaps_on_cpu():
    engine = make_engine("ernie-4.5-tiny", slots=8)
    mix = without_stops(random_mix(9, engine.config.model.vocab_size, num_requests=16, spread_s=0))
    idle = {mode: decode_worker_idle_us(run_tokens(engine, mix, mode)[1]) for mode in MODES}
    assert idle["overlap"] < idle["sync"], idle


def test_bad_engine_config():
    with pytest.raises(ConfigError, match="max_num_seqs"):
        EngineConfig(model_config("ernie-4.5-tiny"), max_num_seqs=0)
    with pytest.raises(ConfigError, match="unknown device"):
        EngineConfig(model_config("ernie-4.5-tiny"), device="tpu")
    engine = make_engine("ernie-4.5-tiny")
    with pytest.raises(ConfigError, match="unknown mode"):
        engine.run([], "async")


@pytest.mark.cuda
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_bf16_graphs_sync_and_overlap_agree(name):
    check_family(name, range(20), device="cuda")


@pytest.mark.cuda
def test_cuda_overlap_decode_never_syncs_outside_the_output_wait(host_syncs_raise):
    engine = make_engine("ernie-4.5-tiny", device="cuda", slots=8)
    assert engine.runner.graphs is not None
    mix = without_stops(random_mix(2, engine.config.model.vocab_size, spread_s=0))
    run_tokens(engine, mix, "overlap")  # warm: allocator and kernels settled
    with host_syncs_raise():
        _, output = run_tokens(engine, mix, "overlap")
    assert output.host_waits["step_output"] == len(output.steps)


@pytest.mark.cuda
def test_cuda_overlap_with_chunked_prefill_never_syncs_outside_the_output_wait(host_syncs_raise):
    """Mixed steps (decode rows + prompt chunks, eager but for the rows' graph), chunk
    continuations and insertions, with logprobs: still one host wait per step."""
    engine = make_engine("glm-4.5-air-tiny", device="cuda", slots=4, **CHUNKED)
    mix = without_stops(random_mix(3, engine.config.model.vocab_size, spread_s=0))
    run_tokens(engine, mix, "overlap")  # warm: allocator and kernels settled
    with host_syncs_raise():
        _, output = run_tokens(engine, mix, "overlap")
    assert {record.step.kind.value for record in output.steps} >= {"mixed", "decode"}
    assert output.host_waits["step_output"] == len(output.steps)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests run the kernels compiled")
def test_the_engine_on_triton_kernels_in_the_interpreter_gives_the_torch_tokens():
    """The whole engine on the Triton kernels (in Triton's interpreter, on CPU tensors):
    the kernels are wired in where the torch references were, under both schedules."""
    pytest.importorskip("triton")
    mix = without_stops(random_mix(8, 512, num_requests=2, max_prompt=9, max_tokens=3))
    tokens = {}
    for kernels in ("torch", "triton"):
        engine = make_engine("glm-4.5-air-tiny", slots=2, kernels=kernels, **CHUNKED)
        for mode in MODES:
            tokens[kernels, mode], _ = run_tokens(engine, mix, mode)
        engine.close()
    assert len(set(map(str, tokens.values()))) == 1, tokens


def test_the_heap_alive_before_a_run_is_frozen_during_it_and_thawed_after():
    """No full GC walks the model and imports mid-run (a 100-300 ms host stall)."""
    engine = make_engine("ernie-4.5-tiny")
    frozen = []
    mix = without_stops(random_mix(1, engine.config.model.vocab_size, num_requests=2))
    engine.run(fresh(mix), "overlap", on_step=lambda record: frozen.append(gc.get_freeze_count()))
    assert frozen and min(frozen) > 1000
    assert gc.get_freeze_count() == 0
