"""RMSNorm and rotary kernels against their torch references (interpreter on CPU; GPU)."""

import pytest
import torch

from reference_engine.kernels import KernelBackend
from reference_engine.kernels.rowwise import rms_norm, rms_norm_torch, rotary, rotary_torch
from reference_engine.layers import Rotary

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TRITON = KernelBackend.TRITON


def table(max_len: int, rotary_dim: int) -> Rotary:
    module = Rotary(rotary_dim, 10_000.0, max_len)
    return module.to(DEVICE)


@pytest.mark.parametrize("rows,hidden", [(1, 64), (5, 48), (64, 256)])
def test_rms_norm_matches_the_reference(rows, hidden):
    generator = torch.Generator().manual_seed(rows * hidden)
    x = (torch.randn(rows, hidden, generator=generator) * 3).to(DEVICE)
    weight = torch.randn(hidden, generator=generator).to(DEVICE)
    ours, reference = rms_norm(x, weight, 1e-5, TRITON), rms_norm_torch(x, weight, 1e-5)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    # row-wise: a row's result does not depend on the others
    alone = rms_norm(x[-1:].clone(), weight, 1e-5, TRITON)
    assert torch.equal(alone[0], ours[-1])


@pytest.mark.parametrize("head_dim,rotary_dim", [(16, 16), (16, 8), (24, 12)])
def test_rotary_matches_the_reference_on_strided_heads(head_dim, rotary_dim):
    generator = torch.Generator().manual_seed(head_dim + rotary_dim)
    rows, heads, max_len = 6, 3, 40
    packed = torch.randn(rows, (heads + 2) * head_dim, generator=generator).to(DEVICE)
    x = packed[:, head_dim : (heads + 1) * head_dim].view(rows, heads, head_dim)  # a split view
    positions = torch.randint(0, max_len, (rows,), generator=generator).to(DEVICE)
    module = table(max_len, rotary_dim)
    ours = rotary(x, positions, module.cos, module.sin, TRITON)
    reference = rotary_torch(x, positions, module.cos, module.sin)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    assert ours.is_contiguous() and ours.shape == x.shape


@pytest.mark.cuda
def test_bf16_kernels_within_rounding_of_the_reference_and_capturable():
    x = torch.randn(64, 4096, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    reference = rms_norm_torch(x, weight, 1e-5).float()
    error = (rms_norm(x, weight, 1e-5, TRITON).float() - reference).norm() / reference.norm()
    assert error < 1e-2
    module = table(8192, 64)
    q = torch.randn(64, 96, 128, device="cuda", dtype=torch.bfloat16)
    positions = torch.randint(0, 8192, (64,), device="cuda")
    expected = rotary_torch(q, positions, module.cos, module.sin).float()
    graph = torch.cuda.CUDAGraph()
    rotary(q, positions, module.cos, module.sin, TRITON)  # compile outside the capture
    with torch.cuda.graph(graph):
        captured = rotary(q, positions, module.cos, module.sin, TRITON)
    graph.replay()
    torch.cuda.synchronize()
    assert (captured.float() - expected).norm() / expected.norm() < 1e-2
