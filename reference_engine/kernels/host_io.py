"""A step's host <-> device traffic as one small kernel each way, which also time the step.

Each step moves one packed input table host -> device and one packed output table device
-> host. As `cudaMemcpyAsync` calls (copy-engine operations ordered against the compute
stream) every such copy left several µs of device idle around it: ~27 µs at every overlap
step boundary on an H200. Pinned host memory is addressable from the device (unified
addressing), so a one-program kernel reads or writes it directly: the copies become
ordinary kernels of the step, inside its CUDA graph.

They are also the step's first and last device op, so they time it: `stage_in` reads the
device clock (`%globaltimer`, ns) as it starts and `stage_out` as it finishes its stores,
and the two stamps travel to the host in the output table's last row. A CUDA event cannot
do this: one recorded before the step completes as soon as the host records it on an idle
device, and one recorded as a graph's first node fired up to ~290 µs before the graph's
first kernel on an H200.

On CPU the same functions are torch copies, and the "device clock" is the worker thread's
`perf_counter_ns` (the worker thread is the CPU device's stream).
"""

from __future__ import annotations

import time

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU path needs no Triton
    triton = None

_BLOCK = 1024  # words per program of the copy kernels


def stage_in(host_inputs: torch.Tensor, dev_inputs: torch.Tensor, stamp: torch.Tensor | None):
    """dev_inputs <- host_inputs; with `stamp` (one int64 element of device memory), first
    write the device clock there: the step's start."""
    _check(host_inputs, dev_inputs)
    if not dev_inputs.is_cuda:
        if stamp is not None:
            stamp.fill_(time.perf_counter_ns())
        dev_inputs.copy_(host_inputs)
        return
    stamp_at = stamp if stamp is not None else dev_inputs
    _launch_in(host_inputs, dev_inputs, stamp_at, timed=stamp is not None)


def stage_out(dev_outputs: torch.Tensor, host_outputs: torch.Tensor, timed: bool) -> None:
    """host_outputs <- dev_outputs; `timed`: the last word gets the device clock instead,
    read after every other word was stored: the step's end."""
    _check(dev_outputs, host_outputs)
    if not dev_outputs.is_cuda:
        host_outputs.copy_(dev_outputs)
        if timed:
            host_outputs.view(-1)[-1] = time.perf_counter_ns()
        return
    words = dev_outputs.numel()
    _stage_out_kernel[(1,)](
        dev_outputs, host_outputs, host_outputs, words, TIMED=timed, BLOCK=_BLOCK
    )


def copy_words(source: torch.Tensor, target: torch.Tensor) -> None:
    """target <- source (int64 tables), by kernel on CUDA (either side may be pinned host
    memory), by torch on CPU."""
    _check(source, target)
    if source.is_cuda or target.is_cuda:
        _launch_in(source, target, target, timed=False)
    else:
        target.copy_(source)


def stamp_clock(target: torch.Tensor) -> None:
    """Write the device clock (ns) into `target`, one int64 of pinned host memory on CUDA,
    when the stream gets there; on CPU, call it on the worker thread."""
    if not target.is_pinned():
        target.fill_(time.perf_counter_ns())
        return
    _stage_out_kernel[(1,)](target, target, target, 1, TIMED=True, BLOCK=16)


def _check(source: torch.Tensor, target: torch.Tensor) -> None:
    int64 = source.dtype == torch.int64 and target.dtype == torch.int64
    if source.shape != target.shape or not int64:
        raise ValueError(
            "a step table copy needs two int64 tables of one shape, got "
            f"{tuple(source.shape)} {source.dtype} / {tuple(target.shape)} {target.dtype}"
        )
    if not (source.is_contiguous() and target.is_contiguous()):
        raise ValueError("a step table copy needs contiguous tables")


def _launch_in(source, target, stamp, timed: bool) -> None:
    words = source.numel()
    grid = (triton.cdiv(words, _BLOCK),)
    _stage_in_kernel[grid](source, target, stamp, words, TIMED=timed, BLOCK=_BLOCK)


if triton is not None:

    @triton.jit
    def _device_clock():
        return tl.inline_asm_elementwise(
            "mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1
        )

    @triton.jit
    def _stage_in_kernel(source, target, stamp, words, TIMED: tl.constexpr, BLOCK: tl.constexpr):
        block = tl.program_id(0)
        if TIMED and block == 0:
            tl.store(stamp, _device_clock())
        offsets = block * BLOCK + tl.arange(0, BLOCK)
        inside = offsets < words
        tl.store(target + offsets, tl.load(source + offsets, mask=inside), mask=inside)

    @triton.jit
    def _stage_out_kernel(source, target, stamp, words, TIMED: tl.constexpr, BLOCK: tl.constexpr):
        # one program, so that the clock is read after all the other words were stored
        copied = words - 1 if TIMED else words
        for start in range(0, copied, BLOCK):
            offsets = start + tl.arange(0, BLOCK)
            inside = offsets < copied
            tl.store(target + offsets, tl.load(source + offsets, mask=inside), mask=inside)
        if TIMED:
            tl.debug_barrier()
            tl.store(stamp + words - 1, _device_clock())
