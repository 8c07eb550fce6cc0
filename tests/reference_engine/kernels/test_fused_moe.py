"""Fused MoE: the align step, the Triton kernels against the torch reference, batch invariance.

Without a GPU the Triton kernels run in Triton's interpreter on fp32 CPU tensors (its `tl.dot`
on bf16 is wrong in Triton 3.6). The `cuda` tests check bf16 at the real presets' shapes,
bit-identical batch invariance, CUDA-graph replay and the absence of host syncs.
"""

from __future__ import annotations

import functools
import importlib.util
import random

import pytest
import torch
import torch.nn.functional as F

from reference_engine.config import ERNIE_45_TINY, GLM_45_AIR_TINY
from reference_engine.kernels import KernelBackend
from reference_engine.kernels import fused_moe as fm
from reference_engine.moe import MoE, route

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="needs Triton (pip install triton)"
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32 kernels (exact fp32 dot: "ieee") against the fp32 torch reference: only the summation
# order differs.
FP32_TOL = dict(rtol=1e-4, atol=1e-5)


def random_routing(num_tokens, num_experts, top_k, generator, device=DEVICE):
    """Distinct experts per token, uniformly at random; weights in [0.1, 1.1)."""
    scores = torch.rand(num_tokens, num_experts, generator=generator, device=device)
    topk_ids = scores.topk(top_k, dim=-1).indices
    topk_weights = torch.rand(num_tokens, top_k, generator=generator, device=device) + 0.1
    return topk_ids, topk_weights


def random_problem(num_tokens, num_experts, top_k, hidden, inter, seed, dtype=torch.float32):
    """x, topk_ids, topk_weights, gate_up, down: fresh random data, unit-scale activations."""
    g = torch.Generator(DEVICE).manual_seed(seed)
    x = torch.randn(num_tokens, hidden, generator=g, device=DEVICE).to(dtype)
    topk_ids, topk_weights = random_routing(num_tokens, num_experts, top_k, g)
    gate_up = torch.randn(num_experts, hidden, 2 * inter, generator=g, device=DEVICE)
    down = torch.randn(num_experts, inter, hidden, generator=g, device=DEVICE)
    gate_up, down = (gate_up * hidden**-0.5).to(dtype), (down * inter**-0.5).to(dtype)
    return x, topk_ids, topk_weights, gate_up, down


@pytest.fixture
def poisoned_buffers(monkeypatch):
    """Every buffer the Triton path allocates starts as NaN (floats) or -7777 (ints)."""

    def poisoned_empty(*size, dtype=None, device=None):
        buffer = torch.empty(*size, dtype=dtype, device=device)
        return buffer.fill_(float("nan") if buffer.is_floating_point() else -7777)

    monkeypatch.setattr(fm, "_empty", poisoned_empty)


def align_reference(topk_ids, num_experts, block_m):
    """Plain Python: rows (pair ids by expert, padded with the sentinel) and block experts."""
    experts = topk_ids.reshape(-1).tolist()
    sentinel = len(experts)
    rows, block_expert = [], []
    for expert in range(num_experts):
        members = [pair for pair, e in enumerate(experts) if e == expert]
        padded = -(-len(members) // block_m) * block_m
        rows += members + [sentinel] * (padded - len(members))
        block_expert += [expert] * (padded // block_m)
    return rows, block_expert


ALIGN_CASES = {
    "one-token": (1, 8, 2, 16, None),
    "many-chunks": (37, 8, 3, 16, 16),
    "one-expert-takes-all": (50, 4, 2, 16, 16),
    "ernie-like": (20, 64, 6, 16, None),
    "prefill-blocks": (300, 128, 8, 64, None),
}


@needs_triton
@pytest.mark.parametrize("case", ALIGN_CASES)
def test_align_matches_python(case, poisoned_buffers):
    num_tokens, num_experts, top_k, block_m, chunk = ALIGN_CASES[case]
    g = torch.Generator(DEVICE).manual_seed(len(case))
    topk_ids, _ = random_routing(num_tokens, num_experts, top_k, g)
    if case == "one-expert-takes-all":
        topk_ids[:, 0] = 2
        topk_ids[:, 1] = torch.where(topk_ids[:, 1] == 2, 3, topk_ids[:, 1])
    align = fm.align_pairs(topk_ids, num_experts, block_m, chunk=chunk)
    rows, block_expert = align_reference(topk_ids.cpu(), num_experts, block_m)
    num_pairs = topk_ids.numel()
    capacity = num_pairs + min(num_experts, num_pairs) * (block_m - 1)
    assert align.sorted_pair_ids.shape == (capacity,)
    assert align.block_expert.shape == (-(-capacity // block_m),)
    total = int(align.total_padded.item())
    assert total == len(rows)
    assert align.sorted_pair_ids[:total].tolist() == rows
    assert set(align.sorted_pair_ids[total:].tolist()) <= {num_pairs}
    used_blocks = total // block_m
    assert align.block_expert[:used_blocks].tolist() == block_expert
    assert set(align.block_expert[used_blocks:].tolist()) <= {-1}


TRITON_CASES = {
    # num_tokens, num_experts, top_k, hidden, inter
    "one-token": (1, 8, 2, 64, 32),
    "ragged-dims": (37, 8, 3, 48, 40),  # N, H, I not multiples of their tiles
    "one-expert-takes-all": (40, 8, 2, 64, 32),
    "experts-unhit": (24, 16, 2, 32, 16),
    "middle-tiles": (40, 2, 2, 32, 16),  # 40 pairs per expert: BLOCK_M 32
    "prefill-tiles": (200, 2, 2, 32, 16),  # 200 pairs per expert: BLOCK_M 64
}


@needs_triton
@pytest.mark.parametrize("case", TRITON_CASES)
def test_triton_matches_torch_fp32(case, poisoned_buffers):
    num_tokens, _, top_k, hidden, _ = TRITON_CASES[case]
    x, topk_ids, topk_weights, gate_up, down = random_problem(*TRITON_CASES[case], seed=7)
    if case == "one-expert-takes-all":
        topk_ids[:, 0] = 5
        topk_ids[:, 1] = torch.where(topk_ids[:, 1] == 5, 6, topk_ids[:, 1])
    if case == "experts-unhit":
        order = torch.rand(num_tokens, 3, device=DEVICE).argsort(1)[:, :top_k]
        topk_ids = torch.tensor([1, 7, 9], device=DEVICE)[order]
    out = torch.full((num_tokens, hidden), float("nan"), device=DEVICE)
    fm.moe_experts_triton(x, topk_ids, topk_weights, gate_up, down, out=out)
    ref = fm.moe_experts_torch(x, topk_ids, topk_weights, gate_up, down)
    torch.testing.assert_close(out, ref, **FP32_TOL)


def test_tile_config_depends_on_shapes_only():
    assert fm.choose_tile_config(4, 8, 128, 4096, 1408) == fm.DECODE_TILES
    assert fm.choose_tile_config(64, 6, 64, 2560, 1536) == fm.DECODE_TILES
    assert fm.choose_tile_config(8192, 8, 128, 4096, 1408) == fm.PREFILL_TILES
    tiny = fm.choose_tile_config(5, 2, 8, 24, 8)
    assert (tiny.gate_up.block_n, tiny.gate_up.block_k, tiny.down.block_n) == (16, 32, 32)


@needs_triton
def test_triton_batch_invariant_fp32(poisoned_buffers):
    """Tokens 0..3 keep their rows bit-for-bit while the other tokens change."""
    num_tokens, num_experts, top_k, hidden = 12, 8, 2, 64
    x, topk_ids, topk_weights, gate_up, down = random_problem(12, 8, 2, 64, 32, seed=3)
    first = fm.moe_experts_triton(x, topk_ids, topk_weights, gate_up, down)
    g = torch.Generator(DEVICE).manual_seed(11)
    for trial in range(3):
        x[4:] = torch.randn(num_tokens - 4, hidden, generator=g, device=DEVICE)
        ids, weights = random_routing(num_tokens - 4, num_experts, top_k, g)
        if trial == 2:  # everyone on token 0's experts: its groups grow, its rows move
            ids = topk_ids[:1].expand(num_tokens - 4, top_k)
        topk_ids[4:], topk_weights[4:] = ids, weights
        out = fm.moe_experts_triton(x, topk_ids, topk_weights, gate_up, down)
        assert torch.equal(out[:4], first[:4]), f"trial {trial}"


def moe_forward_before_refactor(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """MoE.forward as it was before routing and the experts op were split (dense routing)."""
    logits = x.float() @ moe.router.float().t()
    scores = logits.sigmoid() if moe.router_kind == "sigmoid" else logits.softmax(-1)
    chosen = (scores + moe.correction_bias.float()).topk(moe.top_k, dim=-1).indices
    weights = scores.gather(1, chosen)
    if moe.norm_topk_prob:
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-20)
    dense = torch.zeros_like(scores).scatter_(1, chosen, weights * moe.scale).to(x.dtype)
    experts = moe.gate_up.shape[0]
    gate, up = torch.bmm(x.expand(experts, *x.shape), moe.gate_up).chunk(2, dim=-1)
    expert_out = torch.bmm(F.silu(gate) * up, moe.down)
    out = torch.bmm(dense.unsqueeze(1), expert_out.transpose(0, 1)).squeeze(1)
    return out + moe.shared(x) if moe.shared is not None else out


def tiny_moe(config, seed: int) -> MoE:
    """A tiny MoE layer with random weights, as the model builder fills them."""
    torch.manual_seed(seed)
    moe = MoE(config)
    with torch.no_grad():
        for name, param in moe.named_parameters():
            std = 0.1 if name == "correction_bias" else 0.02
            param.normal_(0.0, std)
    return moe.eval().requires_grad_(False)


@pytest.mark.parametrize("config", [GLM_45_AIR_TINY, ERNIE_45_TINY], ids=lambda c: c.name)
def test_torch_backend_keeps_todays_numerics(config):
    moe = tiny_moe(config, seed=1)
    x = torch.randn(9, config.hidden_size)
    assert moe.backend == KernelBackend.TORCH
    assert torch.equal(moe(x), moe_forward_before_refactor(moe, x))


def test_route_returns_scaled_weights_and_ids():
    moe = tiny_moe(GLM_45_AIR_TINY, seed=2)
    x = torch.randn(5, GLM_45_AIR_TINY.hidden_size)
    args = (moe.router, moe.correction_bias, moe.top_k, moe.router_kind, moe.norm_topk_prob)
    weights, ids = route(x, *args, 2.5)
    assert weights.dtype == torch.float32 and ids.dtype == torch.int64
    assert weights.shape == ids.shape == (5, moe.top_k)
    torch.testing.assert_close(weights.sum(-1), torch.full((5,), 2.5))


@needs_triton
@pytest.mark.parametrize("config", [GLM_45_AIR_TINY, ERNIE_45_TINY], ids=lambda c: c.name)
def test_triton_backend_in_moe_layer(config):
    moe = tiny_moe(config, seed=4).to(DEVICE)
    x = torch.randn(6, config.hidden_size, device=DEVICE)
    expected = moe(x)
    moe.backend = KernelBackend.TRITON
    torch.testing.assert_close(moe(x), expected, **FP32_TOL)


# ------------------------------------------------------------------------------------------
# GPU: bf16 at the presets' shapes
# ------------------------------------------------------------------------------------------

PRESETS = {  # num_experts, top_k, hidden, inter, router kind
    "ernie": (64, 6, 2560, 1536, "softmax"),
    "glm": (128, 8, 4096, 1408, "sigmoid"),
}
# bf16 rounds the intermediate, each pair's output and the result (~2^-9 each); measured
# against fp32 math on the same bf16 inputs the relative Frobenius error is a few 1e-3.
BF16_REL_TOL = 1e-2


@functools.lru_cache(maxsize=1)
def preset_weights(preset: str):
    """bf16 gate_up, down, router and correction bias, drawn as the model builder draws them."""
    num_experts, _, hidden, inter, _ = PRESETS[preset]
    g = torch.Generator("cuda").manual_seed(0)

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=g, device="cuda", dtype=torch.bfloat16) * std

    gate_up, down = normal(num_experts, hidden, 2 * inter), normal(num_experts, inter, hidden)
    return gate_up, down, normal(num_experts, hidden), normal(num_experts, std=0.1)


@pytest.fixture(scope="module", autouse=True)
def free_preset_weights():
    """Give the presets' expert weights (GBs) back once this module's tests are done."""
    yield
    preset_weights.cache_clear()


def preset_problem(preset: str, num_tokens: int, seed: int, routing: str = "engine"):
    """x, topk_ids, topk_weights, gate_up, down at a preset's shapes, bf16.

    routing "engine": the random router as the model builder draws it (its correction bias
    dominates ERNIE's softmax: few experts, many tokens each); "uniform": k distinct experts
    per token uniformly at random (a trained router's spread: ERNIE c64 hits all 64).
    """
    num_experts, top_k, hidden, _, router_kind = PRESETS[preset]
    gate_up, down, router, bias = preset_weights(preset)
    g = torch.Generator("cuda").manual_seed(seed)
    x = torch.randn(num_tokens, hidden, generator=g, device="cuda").to(torch.bfloat16)
    weights, ids = route(x, router, bias, top_k, router_kind, True, 1.0)
    if routing == "uniform":
        ids, _ = random_routing(num_tokens, num_experts, top_k, g, device="cuda")
    return x, ids, weights, gate_up, down


def fp32_reference(x, topk_ids, topk_weights, gate_up, down):
    """The routed experts in fp32 on upcast inputs, expert by expert (host syncs are fine)."""
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    flat_ids = topk_ids.reshape(-1)
    for expert in flat_ids.unique().tolist():
        pairs = (flat_ids == expert).nonzero().squeeze(1)
        tokens, inter = pairs // topk_ids.shape[1], down.shape[1]
        h = x[tokens].float() @ gate_up[expert].float()
        act = F.silu(h[:, :inter]) * h[:, inter:]
        contribution = (act @ down[expert].float()) * topk_weights.reshape(-1)[pairs, None]
        out.index_add_(0, tokens, contribution)
    return out


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref).norm() / ref.norm()).item()


GPU_SHAPES = [("ernie", 64), ("glm", 4), ("glm", 64)]


@pytest.mark.cuda
@pytest.mark.parametrize("routing", ["engine", "uniform"])
@pytest.mark.parametrize("preset,num_tokens", [*GPU_SHAPES, ("ernie", 8192), ("glm", 8192)])
def test_gpu_bf16_matches_fp32_reference(preset, num_tokens, routing):
    problem = preset_problem(preset, num_tokens, seed=0, routing=routing)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # an fp32 reference, not tf32
    try:
        ref = fp32_reference(*problem)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    out = fm.moe_experts(*problem, backend=KernelBackend.TRITON)
    assert out.dtype == torch.bfloat16 and out.shape == problem[0].shape
    assert relative_error(out, ref) < BF16_REL_TOL


@pytest.mark.cuda
@pytest.mark.parametrize("preset,num_tokens", GPU_SHAPES)
def test_gpu_batch_invariant(preset, num_tokens):
    """Rows of tokens 0..1 are bit-identical over random compositions of the other tokens."""
    x, ids, weights, gate_up, down = preset_problem(preset, num_tokens, seed=1)
    first = fm.moe_experts_triton(x, ids, weights, gate_up, down)
    rng, keep = random.Random(5), 2
    for trial in range(8):
        routing = ("engine", "uniform")[trial % 2]
        x2, ids2, w2, *_ = preset_problem(preset, num_tokens, seed=100 + trial, routing=routing)
        if trial % 4 == 3:  # everyone on token 0's experts: max sharing, its rows move
            ids2[:] = ids[0]
        if trial % 4 == 2:  # idle-like slots: the same row repeated
            x2[:] = x2[rng.randrange(num_tokens)]
        x2[:keep], ids2[:keep], w2[:keep] = x[:keep], ids[:keep], weights[:keep]
        out = fm.moe_experts_triton(x2, ids2, w2, gate_up, down)
        assert torch.equal(out[:keep], first[:keep]), f"trial {trial}"


@pytest.mark.cuda
@pytest.mark.parametrize("preset,num_tokens", GPU_SHAPES)
def test_gpu_cuda_graph_replay_equals_eager(preset, num_tokens):
    x, ids, weights, gate_up, down = preset_problem(preset, num_tokens, seed=2)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up (compile) off the default stream
        fm.moe_experts_triton(x, ids, weights, gate_up, down)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fm.moe_experts_triton(x, ids, weights, gate_up, down)
    for seed, routing in ((3, "engine"), (4, "uniform")):
        new_x, new_ids, new_weights, *_ = preset_problem(preset, num_tokens, seed, routing)
        x.copy_(new_x)
        ids.copy_(new_ids)
        weights.copy_(new_weights)
        graph.replay()
        eager = fm.moe_experts_triton(new_x, new_ids, new_weights, gate_up, down)
        assert torch.equal(captured, eager)


@pytest.mark.cuda
@pytest.mark.parametrize("preset,num_tokens", GPU_SHAPES)
def test_gpu_no_host_sync(preset, num_tokens, host_syncs_raise):
    problem = preset_problem(preset, num_tokens, seed=5)
    fm.moe_experts(*problem, backend=KernelBackend.TRITON)  # warm: compile, allocate
    torch.cuda.synchronize()
    with host_syncs_raise():
        fm.moe_experts(*problem, backend=KernelBackend.TRITON)
    torch.cuda.synchronize()
