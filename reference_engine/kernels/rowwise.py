"""RMSNorm and rotary embedding, each one kernel instead of a chain of small torch ops.

At decode the chains cost more than their bytes: in torch, an RMSNorm is ~7 kernels and
a rotary embedding ~10, each a few µs on a handful of rows; twice per layer over 28
layers that was ~15 % of an H200 decode step at concurrency 4. Both are row-wise: a
row's result depends on its own row alone (batch-invariant by construction), with a
launch configuration fixed by the shapes.

The torch functions are the references (and the CPU path); the kernels compute the same
formulas in fp32 and round once at the end.
"""

from __future__ import annotations

import torch

from reference_engine.kernels import KernelBackend

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch path needs no Triton
    triton = None


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x²) + eps) * weight, in fp32, rounded to x's dtype. x: (N, H)."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (x32 * weight.float()).to(x.dtype)


def rotary_torch(x: torch.Tensor, positions, cos: torch.Tensor, sin: torch.Tensor):
    """RoPE on the first 2·cos.shape[1] dims of each head. x: (N, heads, head_dim);
    positions: (N,); cos, sin: (max_len, rotary_dim / 2) fp32."""
    rotary_dim = 2 * cos.shape[1]
    rot, rest = x[..., :rotary_dim].float(), x[..., rotary_dim:]
    cos_rows, sin_rows = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)
    x1, x2 = rot.chunk(2, dim=-1)
    rotated = torch.cat((x1 * cos_rows - x2 * sin_rows, x2 * cos_rows + x1 * sin_rows), dim=-1)
    return torch.cat((rotated.to(x.dtype), rest), dim=-1)


def rms_norm(x, weight, eps: float, backend: KernelBackend) -> torch.Tensor:
    if backend is not KernelBackend.TRITON:
        return rms_norm_torch(x, weight, eps)
    rows, hidden = x.shape
    out = torch.empty((rows, hidden), dtype=x.dtype, device=x.device)
    block = triton.next_power_of_2(hidden)
    _rms_norm_kernel[(rows,)](x, weight, out, x.stride(0), hidden, eps, BLOCK=block)
    return out


def rotary(x, positions, cos, sin, backend: KernelBackend) -> torch.Tensor:
    if backend is not KernelBackend.TRITON:
        return rotary_torch(x, positions, cos, sin)
    rows, heads, head_dim = x.shape
    half = cos.shape[1]
    out = torch.empty((rows, heads, head_dim), dtype=x.dtype, device=x.device)
    _rotary_kernel[(rows, heads)](
        x, positions, cos, sin, out, x.stride(0), x.stride(1), positions.stride(0),
        HALF=half, BLOCK_HALF=triton.next_power_of_2(half), HEAD_DIM=head_dim,
        BLOCK_REST=max(1, triton.next_power_of_2(head_dim - 2 * half)),
    )  # fmt: skip
    return out


if triton is not None:

    @triton.jit
    def _rms_norm_kernel(x, weight, out, row_stride, hidden, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        inside = cols < hidden
        values = tl.load(x + row * row_stride + cols, mask=inside, other=0.0).to(tl.float32)
        inverse = 1.0 / tl.sqrt(tl.sum(values * values, axis=0) / hidden + eps)
        scale = tl.load(weight + cols, mask=inside, other=0.0).to(tl.float32)
        normed = values * inverse * scale
        tl.store(out + row * hidden + cols, normed.to(out.dtype.element_ty), mask=inside)

    @triton.jit
    def _rotary_kernel(
        x, positions, cos, sin, out, row_stride, head_stride, position_stride,
        HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, HEAD_DIM: tl.constexpr,
        BLOCK_REST: tl.constexpr,
    ):  # fmt: skip
        row, head = tl.program_id(0).to(tl.int64), tl.program_id(1)
        source = x + row * row_stride + head * head_stride
        target = out + (row * tl.num_programs(1) + head) * HEAD_DIM
        position = tl.load(positions + row * position_stride).to(tl.int64)
        i = tl.arange(0, BLOCK_HALF)
        inside = i < HALF
        x1 = tl.load(source + i, mask=inside, other=0.0).to(tl.float32)
        x2 = tl.load(source + HALF + i, mask=inside, other=0.0).to(tl.float32)
        c = tl.load(cos + position * HALF + i, mask=inside, other=0.0)
        s = tl.load(sin + position * HALF + i, mask=inside, other=0.0)
        kind = out.dtype.element_ty
        tl.store(target + i, (x1 * c - x2 * s).to(kind), mask=inside)
        tl.store(target + HALF + i, (x2 * c + x1 * s).to(kind), mask=inside)
        rest = 2 * HALF + tl.arange(0, BLOCK_REST)
        keep = rest < HEAD_DIM
        tl.store(target + rest, tl.load(source + rest, mask=keep), mask=keep)
