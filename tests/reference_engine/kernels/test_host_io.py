"""The packed step-table copies and their device clock stamps, on CPU and inside a graph."""

import time

import pytest
import torch

from reference_engine.kernels.host_io import copy_words, stage_in, stage_out, stamp_clock

GPU = torch.cuda.is_available()


def tables(shape, to_device: bool):
    """A random source and a poisoned target: on a GPU one of them is pinned host memory,
    the other device memory; without one, both are CPU tensors."""
    source = torch.randint(-(2**62), 2**62, shape, dtype=torch.int64)
    target = torch.full(shape, -1, dtype=torch.int64)
    if not GPU:
        return source, target
    if to_device:
        return source.pin_memory(), target.cuda()
    return source.cuda(), target.pin_memory()


def settle():
    if GPU:
        torch.cuda.synchronize()


@pytest.mark.parametrize("to_device", [True, False])
@pytest.mark.parametrize("shape", [(1, 2), (3, 4), (65, 2), (5000,)])
def test_copies_every_word(shape, to_device):
    source, target = tables(shape, to_device)
    copy_words(source, target)
    settle()
    assert torch.equal(target.cpu(), source.cpu())


@pytest.mark.parametrize("slots", [1, 64, 600])
def test_stage_out_copies_all_but_the_last_word_and_stamps_it(slots):
    dev, host = tables((slots + 1, 2), to_device=False)
    clocks = torch.zeros(2, dtype=torch.int64, pin_memory=GPU)
    stamp_clock(clocks[:1])
    stage_out(dev, host, timed=True)
    stamp_clock(clocks[1:])
    settle()
    assert torch.equal(host.view(-1)[:-1], dev.cpu().view(-1)[:-1])
    assert clocks[0] <= host.view(-1)[-1].item() <= clocks[1]
    stage_out(dev, host, timed=False)
    settle()
    assert torch.equal(host, dev.cpu())


def test_stage_in_stamps_the_start_then_copies():
    host, dev = tables((8, 4), to_device=True)
    stamp = torch.zeros(1, dtype=torch.int64, device=dev.device)
    start = time.perf_counter_ns() if not GPU else None
    stage_in(host, dev, stamp)
    stage_in(host, dev, None)  # untimed: copies only
    settle()
    assert torch.equal(dev.cpu(), host.cpu())
    assert stamp.item() > 0 and (GPU or stamp.item() >= start)


def test_mismatched_tables_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        copy_words(torch.zeros(4, dtype=torch.int64), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="one shape"):
        copy_words(torch.zeros(4, dtype=torch.int32), torch.zeros(4, dtype=torch.int64))


@pytest.mark.cuda
def test_a_graph_reads_new_host_inputs_and_stamps_its_own_work_at_each_replay():
    host_in = torch.zeros((64, 4), dtype=torch.int64, pin_memory=True)
    host_out = torch.zeros((65, 2), dtype=torch.int64, pin_memory=True)
    dev_in = torch.zeros((64, 4), dtype=torch.int64, device="cuda")
    dev_out = torch.zeros((65, 2), dtype=torch.int64, device="cuda")
    work_cycles = 2_000_000  # a spin of known length between the two stamps

    def step():
        stage_in(host_in, dev_in, dev_out[-1, :1])
        torch.cuda._sleep(work_cycles)
        dev_out[:-1].copy_(dev_in[:, :2] + 1)
        stage_out(dev_out, host_out, timed=True)

    step()  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    ends = []
    for _ in range(3):
        values = torch.randint(0, 2**40, (64, 4), dtype=torch.int64)
        host_in.copy_(values)  # the host writes new inputs in place, as the engine does
        before, after = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        before.record()
        graph.replay()
        after.record()
        torch.cuda.synchronize()
        assert torch.equal(host_out[:-1], values[:, :2] + 1)
        start_ns, end_ns = host_out[-1].tolist()
        graph_us = before.elapsed_time(after) * 1e3
        assert 0 < (end_ns - start_ns) / 1e3 <= graph_us + 2.0  # inside the graph's time
        assert (end_ns - start_ns) / 1e3 > 0.5 * graph_us  # and spanning its work
        assert not ends or start_ns > ends[-1]
        ends.append(end_ns)
