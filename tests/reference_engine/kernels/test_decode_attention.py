"""Decode attention: the split-KV Triton kernel against its torch reference.

The tiny-shape tests run the kernel on fp32 (and fp16) where Triton runs: on a GPU when
there is one, else in Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1), whose `tl.dot` is wrong on bf16. The `cuda` tests run bf16 at the
ERNIE / GLM shapes: accuracy against an fp32 reference, bit-identical rows over random
batch compositions, CUDA-graph replay, no host sync.
"""

from __future__ import annotations

import importlib.util
import random

import pytest
import torch

from reference_engine.attention import Attention
from reference_engine.config import model_config
from reference_engine.kernels import KernelBackend, triton_usable
from reference_engine.kernels import decode_attention as kernel_module
from reference_engine.kernels.decode_attention import (
    DecodeTiles,
    decode_attention,
    decode_attention_torch,
    decode_attention_triton,
    split_size,
)
from reference_engine.kv_cache import KVCache
from reference_engine.layers import Rotary

CPU = torch.device("cpu")
KERNEL_DEVICE = torch.device("cuda") if torch.cuda.is_available() else CPU
needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or not triton_usable(KERNEL_DEVICE.type),
    reason="needs Triton (on CUDA, or its interpreter)",
)
FP32_TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # kernel fp32 vs torch fp32
BF16_RELATIVE_ERROR = 1e-2  # ‖out - ref‖ / ‖ref‖, bf16 kernel vs fp32 reference
# Small tiles give many splits and partial blocks at interpreter-sized shapes.
SMALL_TILES = DecodeTiles(block_n=16, min_split=16, target_programs=4096)


def make_inputs(slots, max_len, q_heads, kv_heads, head_dim, *, dtype, device, seed):
    """Fresh random q (S, Hq, D) and one layer's K/V views of an engine-shaped cache.

    The caches are strided views of (layers, 2, S, L, Hkv, D) as `KVCache.layer` returns
    them; q is a strided view too. Lengths are random in [1, L] with 1 and L included.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (2, 2, slots, max_len, kv_heads, head_dim)
    cache = torch.randn(shape, generator=generator, device=device).to(dtype)
    wide_q = torch.randn(slots, q_heads, 2 * head_dim, generator=generator, device=device)
    q = wide_q.to(dtype)[..., :head_dim]
    lengths = torch.randint(1, max_len + 1, (slots,), generator=generator, device=device)
    lengths[0] = max_len
    lengths[-1] = 1
    return q, cache[1, 0], cache[1, 1], lengths


def nan_partials(monkeypatch) -> None:
    """Poison the kernel's workspace: a read of a never-written partial turns into NaN."""
    allocate = kernel_module._partials

    def poisoned(*args, **kwargs):
        parts = allocate(*args, **kwargs)
        for part in parts:
            part.fill_(float("nan"))
        return parts

    monkeypatch.setattr(kernel_module, "_partials", poisoned)


def run_triton(q, keys, values, lengths, tiles=kernel_module.DEFAULT_TILES):
    """The kernel into a NaN-filled output, so an unwritten element fails the comparison."""
    out = torch.full(q.shape, float("nan"), dtype=q.dtype, device=q.device)
    scale = q.shape[-1] ** -0.5
    result = decode_attention_triton(q, keys, values, lengths, scale, out=out, tiles=tiles)
    assert result is out
    return out


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


# -- torch reference ---------------------------------------------------------------------
def test_torch_reference_matches_a_per_slot_softmax_in_float64():
    q, keys, values, lengths = make_inputs(5, 37, 6, 2, 16, dtype=torch.float32, device=CPU, seed=1)
    out = decode_attention_torch(q, keys, values, lengths, 0.25)
    for slot, length in enumerate(lengths.tolist()):
        k = keys[slot, :length].double().repeat_interleave(3, dim=1)  # (len, Hq, D)
        v = values[slot, :length].double().repeat_interleave(3, dim=1)
        probs = (torch.einsum("hd,lhd->hl", q[slot].double(), k) * 0.25).softmax(-1)
        expected = torch.einsum("hl,lhd->hd", probs, v)
        torch.testing.assert_close(out[slot].double(), expected, **FP32_TOLERANCE)


def test_torch_reference_is_bitwise_the_engines_former_decode_math():
    """The CPU path's numerics did not change: the masked full-row attention that
    `Attention.decode` computed inline, with `key_pos <= position`, length = position + 1."""
    q, keys, values, lengths = make_inputs(4, 30, 6, 2, 16, dtype=torch.float32, device=CPU, seed=8)
    q = q.contiguous()
    positions = lengths - 1
    grouped = q.view(4, 2, 3, 16)
    scores = (grouped @ keys.permute(0, 2, 3, 1)).float() * 16**-0.5
    visible = torch.arange(30)[None, :] <= positions[:, None]
    probs = scores.masked_fill(~visible[:, None, None, :], float("-inf")).softmax(-1)
    former = (probs.to(q.dtype) @ values.transpose(1, 2)).reshape(4, -1)
    out = decode_attention_torch(q, keys, values, lengths, 16**-0.5)
    assert torch.equal(out.reshape(4, -1), former)


# -- the kernel at tiny shapes: in the interpreter on CPU, else on the GPU --------------
INTERPRETER_CASES = [  # slots, max_len, q heads, kv heads, head dim, tiles
    (1, 1, 2, 1, 16, kernel_module.DEFAULT_TILES),  # one position
    (3, 40, 4, 2, 16, SMALL_TILES),  # 3 splits, partial last block
    (4, 300, 12, 4, 16, kernel_module.DEFAULT_TILES),  # default tiles: 3 splits of 128
    (2, 200, 6, 2, 24, DecodeTiles(block_n=32, min_split=64)),  # head dim not a power of 2
    (2, 70, 40, 2, 32, SMALL_TILES),  # group of 20 > 16 rows
    (2, 600, 2, 1, 16, SMALL_TILES),  # 38 splits: the merge folds two chunks
]


@needs_triton
@pytest.mark.parametrize(
    "case", INTERPRETER_CASES, ids=lambda c: "S{}-L{}-Hq{}-Hkv{}-D{}".format(*c)
)
def test_triton_matches_torch_in_the_interpreter(case, monkeypatch):
    *shape, tiles = case
    nan_partials(monkeypatch)
    q, keys, values, lengths = make_inputs(
        *shape, dtype=torch.float32, device=KERNEL_DEVICE, seed=2
    )
    out = run_triton(q, keys, values, lengths, tiles)
    ref = decode_attention_torch(q, keys, values, lengths, shape[-1] ** -0.5)
    torch.testing.assert_close(out, ref, **FP32_TOLERANCE)


@needs_triton
def test_triton_rescales_when_later_positions_score_higher(monkeypatch):
    """Scores that rise along the context move the running max in every block and every
    merge chunk (38 splits of 16), so each rescale step is exercised."""
    nan_partials(monkeypatch)
    q, keys, values, lengths = make_inputs(
        2, 600, 2, 1, 16, dtype=torch.float32, device=KERNEL_DEVICE, seed=7
    )
    rise = (
        torch.linspace(0.0, 4.0, 600, device=KERNEL_DEVICE)[None, :, None, None]
        * q[:, None, :1, :]
        / 16**0.5
    )
    keys.mul_(0.1).add_(rise)
    lengths.copy_(torch.tensor([600, 517]))
    out = run_triton(q, keys, values, lengths, SMALL_TILES)
    ref = decode_attention_torch(q, keys, values, lengths, 16**-0.5)
    torch.testing.assert_close(out, ref, **FP32_TOLERANCE)


@needs_triton
def test_triton_rows_are_batch_invariant_in_the_interpreter(monkeypatch):
    """Kept rows are bit-identical when the other rows change data, length or go idle, and
    when the kept rows' own cache holds NaN past their length."""
    nan_partials(monkeypatch)
    shape = (4, 64, 4, 2, 16)
    q, keys, values, lengths = make_inputs(
        *shape, dtype=torch.float32, device=KERNEL_DEVICE, seed=3
    )
    lengths.copy_(torch.tensor([64, 17, 33, 48]))
    first = run_triton(q, keys, values, lengths, SMALL_TILES)
    kept = torch.tensor([0, 2], device=KERNEL_DEVICE)
    for trial, idle in enumerate((1, 3)):
        q2, keys2, values2, lengths2 = make_inputs(
            *shape, dtype=torch.float32, device=KERNEL_DEVICE, seed=10 + trial
        )
        for src, dst in ((q, q2), (keys, keys2), (values, values2), (lengths, lengths2)):
            dst[kept] = src[kept]
        lengths2[idle] = 1  # one of the others goes idle, the other changes length
        for slot, length in ((0, 64), (2, 33)):  # junk past a slot's length is never read
            keys2[slot, length:] = float("nan")
            values2[slot, length:] = float("nan")
        again = run_triton(q2, keys2, values2, lengths2, SMALL_TILES)
        assert torch.equal(again[kept], first[kept])


@needs_triton
def test_fp16_in_the_interpreter_is_close_to_fp32():
    shape = (3, 50, 8, 2, 32)
    q, keys, values, lengths = make_inputs(
        *shape, dtype=torch.float16, device=KERNEL_DEVICE, seed=4
    )
    out = run_triton(q, keys, values, lengths, SMALL_TILES)
    ref = decode_attention_torch(q.float(), keys.float(), values.float(), lengths, 32**-0.5)
    assert out.dtype == torch.float16
    assert relative_error(out, ref) < 2e-3


@needs_triton
def test_dispatcher_runs_the_backend_it_is_given():
    q, keys, values, lengths = make_inputs(
        3, 20, 4, 2, 16, dtype=torch.float32, device=KERNEL_DEVICE, seed=5
    )
    args = (q, keys, values, lengths, 0.25)
    torch_out = decode_attention(*args, backend=KernelBackend.TORCH)
    assert torch.equal(torch_out, decode_attention_torch(*args))
    triton_out = decode_attention(*args, backend=KernelBackend.TRITON)
    assert torch.equal(triton_out, decode_attention_triton(*args))


@needs_triton
@pytest.mark.parametrize("name", ["glm-4.5-air-tiny", "ernie-4.5-tiny"])
def test_attention_decode_backends_agree(name):
    """`Attention.decode` through either backend, with an idle slot at the scratch row."""
    config, max_len, device = model_config(name), 24, KERNEL_DEVICE
    torch.manual_seed(6)
    rotary = Rotary(config.rotary_dim, config.rope_theta, max_len)
    attention = Attention(config, 0, rotary).eval().to(device)
    cache = KVCache(config, 3, max_len, device, torch.float32)
    cache.data.normal_()
    x = torch.randn(3, config.hidden_size, device=device)
    positions = torch.tensor([5, max_len - 1, 0], device=device)  # slot 1 idle
    rows = torch.arange(3, device=device) * max_len + positions
    with torch.inference_mode():
        reference = attention.decode(x, positions, cache, rows)
        attention.backend = KernelBackend.TRITON
        kernel = attention.decode(x, positions, cache, rows)
    assert attention.backend is KernelBackend.TRITON
    torch.testing.assert_close(kernel, reference, **FP32_TOLERANCE)


def test_split_size_depends_on_static_shapes_and_fills_the_card():
    for slots, max_len, kv_heads in ((64, 2250, 4), (1, 5000, 8), (4, 5000, 8), (64, 5000, 8)):
        size = split_size(slots, max_len, kv_heads)
        assert size % kernel_module.DEFAULT_TILES.block_n == 0
        assert size >= kernel_module.DEFAULT_TILES.min_split
        programs = slots * kv_heads * -(-max_len // size)
        assert programs >= 2 * 132  # at least two programs per H200 SM when slots are full


# -- GPU ---------------------------------------------------------------------------------
GPU_SHAPES = [  # slots, max_len, q heads, kv heads, head dim
    (64, 2250, 20, 4, 128),  # ERNIE-4.5-21B-A3B c64
    (1, 5000, 96, 8, 128),  # GLM-4.5-Air c1
    (4, 5000, 96, 8, 128),
    (16, 5000, 96, 8, 128),
    (64, 5000, 96, 8, 128),
]
GPU_IDS = ["ernie-c64", "glm-c1", "glm-c4", "glm-c16", "glm-c64"]
CUDA = torch.device("cuda")


def gpu_inputs(shape, seed, dtype=torch.bfloat16):
    return make_inputs(*shape, dtype=dtype, device=CUDA, seed=seed)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=GPU_IDS)
def test_bf16_kernel_matches_an_fp32_reference_on_gpu(shape, monkeypatch):
    nan_partials(monkeypatch)
    q, keys, values, lengths = gpu_inputs(shape, seed=20)
    out = run_triton(q, keys, values, lengths)
    scale = shape[-1] ** -0.5
    ref = decode_attention_torch(q.float(), keys.float(), values.float(), lengths, scale)
    assert not out.isnan().any()
    assert relative_error(out, ref) < BF16_RELATIVE_ERROR


@pytest.mark.cuda
def test_fp32_kernel_is_exact_to_fp32_tolerance_on_gpu():
    """fp32 inputs take the full-precision (no TF32) dot."""
    q, keys, values, lengths = gpu_inputs((8, 700, 16, 4, 64), seed=21, dtype=torch.float32)
    out = run_triton(q, keys, values, lengths)
    ref = decode_attention_torch(q, keys, values, lengths, 64**-0.5)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [GPU_SHAPES[0], GPU_SHAPES[3]], ids=["ernie-c64", "glm-c16"])
def test_rows_are_bit_identical_over_random_batch_compositions_on_gpu(shape):
    """Kept rows keep their bits when the others change data, length, or go idle."""
    q, keys, values, lengths = gpu_inputs(shape, seed=30)
    first = run_triton(q, keys, values, lengths)
    rng = random.Random(31)
    slots = shape[0]
    for trial in range(10):
        kept = torch.tensor(sorted(rng.sample(range(slots), max(1, slots // 4))), device=CUDA)
        q2, keys2, values2, lengths2 = gpu_inputs(shape, seed=40 + trial)
        for src, dst in ((q, q2), (keys, keys2), (values, values2), (lengths, lengths2)):
            dst[kept] = src[kept]
        others = sorted(set(range(slots)) - set(kept.tolist()))
        idle = [slot for slot in others if rng.random() < 0.3]
        lengths2[torch.tensor(idle, dtype=torch.int64, device=CUDA)] = 1
        again = run_triton(q2, keys2, values2, lengths2)
        assert torch.equal(again[kept], first[kept]), f"trial {trial}"


@pytest.mark.cuda
def test_cuda_graph_replay_equals_eager():
    shape = GPU_SHAPES[0]
    q, keys, values, lengths = gpu_inputs(shape, seed=50)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    scale = shape[-1] ** -0.5
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm outside the capture
        decode_attention_triton(q, keys, values, lengths, scale, out=out)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode_attention_triton(q, keys, values, lengths, scale, out=out)
    for seed in (51, 52):
        q2, keys2, values2, lengths2 = gpu_inputs(shape, seed=seed)
        for src, dst in ((q2, q), (keys2, keys), (values2, values), (lengths2, lengths)):
            dst.copy_(src)
        graph.replay()
        eager = decode_attention_triton(q, keys, values, lengths, scale)
        assert torch.equal(out, eager)


@pytest.mark.cuda
def test_a_warmed_call_never_syncs_the_host(host_syncs_raise):
    shape = GPU_SHAPES[2]
    q, keys, values, lengths = gpu_inputs(shape, seed=60)
    args = (q, keys, values, lengths, shape[-1] ** -0.5)
    decode_attention(*args, backend=KernelBackend.TRITON)
    torch.cuda.synchronize()
    with host_syncs_raise():
        decode_attention(*args, backend=KernelBackend.TRITON)
    torch.cuda.synchronize()
