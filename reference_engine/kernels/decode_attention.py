"""Decode attention over the static per-slot KV cache: the torch reference and a Triton kernel.

One new query token per slot attends over positions [0, lengths[s]) of its own cache row.
The torch reference is the math `Attention.decode` has always done (full-row matmul with a
mask); it is the CPU path and the oracle of the tests.

The Triton path is split-KV ("flash-decoding"): stage 1 runs a grid (slot, kv head, split);
each program takes every query head of its kv head (GQA group, padded to 16 rows for
`tl.dot`) over one fixed-size span of positions, keeps an online softmax in fp32 and writes
its partial (running max, exp-sum, unnormalised accumulator) to a workspace. Programs whose
span starts at or past the slot's length exit at once, so a slot reads only its valid
context. Stage 2, a grid (slot, query head), merges the slot's splits with log-sum-exp
rescaling in a fixed order (chunks of up to 32 splits reduced as a fixed tree, chunks folded
in index order).

Loops have fixed trip counts (a whole split, all of a slot's possible splits) and mask what
lies past the slot's length: masked steps read no memory and leave the state bit-exact.
Data-dependent loop bounds would spare those steps on the GPU, but Triton 3.6's interpreter
cannot run them under NumPy >= 2.4, and the CPU tests run the kernels there.

Invariants:
- the split size comes from static shapes (slots, max_len, kv heads) and the tile config
  only, never from `lengths`, and every program reads only its own slot: a row's result is
  bit-identical whatever the other slots hold (batch invariance);
- no host sync and no data-dependent shapes: the workspace is sized by max_len, so the call
  can be captured in a CUDA graph;
- offsets are int64: a KV cache can be tens of GB.

`python -m reference_engine.kernels.decode_attention --bench` times it on CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from reference_engine.kernels import KernelBackend, triton_usable

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch reference needs no Triton
    triton = tl = None


def _jit(fn):
    """`triton.jit` where Triton is installed; without it the kernel is never launched."""
    return fn if triton is None else triton.jit(fn)


# -- torch reference ---------------------------------------------------------------------
def decode_attention_torch(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Masked full-row attention. q: (S, Hq, D); caches: (S, L, Hkv, D); lengths: (S,).

    Scores in the cache dtype, softmax in fp32, probabilities cast back to q's dtype: the
    exact numerics of the engine's CPU path.
    """
    slots, q_heads, head_dim = q.shape
    max_len, kv_heads = k_cache.shape[1], k_cache.shape[2]
    grouped = q.reshape(slots, kv_heads, q_heads // kv_heads, head_dim)  # (S, Hkv, G, D)
    scores = grouped @ k_cache.permute(0, 2, 3, 1)  # (S, Hkv, G, L)
    scores = scores.float() * scale
    key_pos = torch.arange(max_len, device=q.device)
    visible = key_pos[None, :] < lengths[:, None]  # (S, L)
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    probs = scores.softmax(-1).to(q.dtype)
    out = probs @ v_cache.transpose(1, 2)  # (S, Hkv, G, D)
    return out.reshape(slots, q_heads, head_dim)


# -- Triton kernels ----------------------------------------------------------------------
@_jit
def _dot(a, b, EXACT_FP32: tl.constexpr):
    """a @ b accumulated in fp32; fp32 inputs in full precision (no TF32) when asked."""
    if EXACT_FP32:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@_jit
def _split_kv_partials_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    lengths_ptr,
    acc_ptr,
    max_ptr,
    sum_ptr,
    scale,
    stride_qs,
    stride_qh,
    stride_qd,
    stride_ks,
    stride_kl,
    stride_kh,
    stride_kd,
    stride_vs,
    stride_vl,
    stride_vh,
    stride_vd,
    stride_as,
    stride_ah,
    stride_asplit,
    stride_ws,
    stride_wh,
    stride_wsplit,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    SPLIT_SIZE: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    EXACT_FP32: tl.constexpr,
):
    """Stage 1, program (slot, kv head, split): partial softmax of the group over one span."""
    slot = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2).to(tl.int64)
    length = tl.load(lengths_ptr + slot).to(tl.int64)
    start = split * SPLIT_SIZE
    if start >= length:
        return
    end = tl.minimum(start + SPLIT_SIZE, length)

    rows = tl.arange(0, BLOCK_G)
    row_ok = rows < GROUP
    heads = kv_head * GROUP + rows  # int64 query-head indices
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    q_ptrs = q_ptr + slot * stride_qs + heads[:, None] * stride_qh + dims[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=row_ok[:, None] & dim_ok[None, :], other=0.0)  # (G, D)
    offsets = tl.arange(0, BLOCK_N)
    span = (end - start).to(tl.int32)  # valid positions of this split, <= SPLIT_SIZE
    first = start + offsets  # int64 positions of the first block
    k_ptrs = k_ptr + slot * stride_ks + kv_head * stride_kh
    k_ptrs += first[None, :] * stride_kl + dims[:, None] * stride_kd  # (D, N): keys transposed
    v_ptrs = v_ptr + slot * stride_vs + kv_head * stride_vh
    v_ptrs += first[:, None] * stride_vl + dims[None, :] * stride_vd  # (N, D)

    running_max = tl.full([BLOCK_G], float("-inf"), tl.float32)
    exp_sum = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    # A fixed trip count: blocks past `end` are fully masked, read no memory and leave the
    # state bit-exact (rescale 1, probabilities 0).
    for block in range(0, SPLIT_SIZE, BLOCK_N):
        pos_ok = block + offsets < span
        keys_t = tl.load(k_ptrs, mask=dim_ok[:, None] & pos_ok[None, :], other=0.0)
        scores = _dot(q, keys_t, EXACT_FP32) * scale  # (G, N) fp32
        scores = tl.where(pos_ok[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        rescale = tl.exp(running_max - new_max)
        probs = tl.exp(scores - new_max[:, None])
        exp_sum = exp_sum * rescale + tl.sum(probs, 1)
        values = tl.load(v_ptrs, mask=pos_ok[:, None] & dim_ok[None, :], other=0.0)
        acc = acc * rescale[:, None] + _dot(probs.to(values.dtype), values, EXACT_FP32)
        running_max = new_max
        k_ptrs += BLOCK_N * stride_kl
        v_ptrs += BLOCK_N * stride_vl

    stat_offsets = slot * stride_ws + heads * stride_wh + split * stride_wsplit
    tl.store(max_ptr + stat_offsets, running_max, mask=row_ok)
    tl.store(sum_ptr + stat_offsets, exp_sum, mask=row_ok)
    acc_ptrs = acc_ptr + slot * stride_as + heads[:, None] * stride_ah + split * stride_asplit
    acc_mask = row_ok[:, None] & dim_ok[None, :]
    tl.store(acc_ptrs + dims[None, :], acc, mask=acc_mask)  # the workspace's D is contiguous


@_jit
def _weighed_chunk(maxes, sum_ptrs, acc_ptrs, splits, written, dim_ok, ref_max, stride_wsplit,
                   stride_asplit):  # fmt: skip
    """Over a chunk of splits, the sums of exp(max - ref_max) * (sum, acc (D,)). Splits the
    slot never reached have max -inf: they weigh exactly 0 and their partials are not read."""
    weights = tl.exp(maxes - ref_max)
    sums = tl.load(sum_ptrs + splits * stride_wsplit, mask=written, other=0.0)
    acc_mask = written[:, None] & dim_ok[None, :]
    accs = tl.load(acc_ptrs + splits[:, None] * stride_asplit, mask=acc_mask, other=0.0)
    return tl.sum(weights * sums, 0), tl.sum(weights[:, None] * accs, 0)


@_jit
def _merge_splits_kernel(
    acc_ptr,
    max_ptr,
    sum_ptr,
    lengths_ptr,
    out_ptr,
    stride_as,
    stride_ah,
    stride_asplit,
    stride_ws,
    stride_wh,
    stride_wsplit,
    stride_os,
    stride_oh,
    stride_od,
    HEAD_DIM: tl.constexpr,
    SPLIT_SIZE: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    SPLIT_CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Stage 2, program (slot, query head): merge the slot's splits with log-sum-exp.

    Chunks of SPLIT_CHUNK splits are loaded at once and reduced in a fixed tree order,
    chunks are folded in index order: the order never depends on data or other slots.
    """
    slot = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1).to(tl.int64)
    length = tl.load(lengths_ptr + slot).to(tl.int64)
    num_splits = (length + SPLIT_SIZE - 1) // SPLIT_SIZE  # >= 1: lengths are >= 1
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    max_ptrs = max_ptr + slot * stride_ws + head * stride_wh
    sum_ptrs = sum_ptr + slot * stride_ws + head * stride_wh
    acc_ptrs = acc_ptr + slot * stride_as + head * stride_ah + dims[None, :]  # D contiguous
    chunk = tl.arange(0, SPLIT_CHUNK)

    written = chunk < num_splits  # the first chunk holds split 0, so its max is finite
    maxes = tl.load(max_ptrs + chunk * stride_wsplit, mask=written, other=float("-inf"))
    running_max = tl.max(maxes, 0)
    exp_sum, acc = _weighed_chunk(
        maxes, sum_ptrs, acc_ptrs, chunk, written, dim_ok, running_max, stride_wsplit,
        stride_asplit,
    )  # fmt: skip
    # A fixed trip count: chunks past the slot's splits weigh 0 and leave the state bit-exact.
    for first in range(SPLIT_CHUNK, NUM_SPLITS, SPLIT_CHUNK):
        splits = first + chunk
        written = splits < num_splits
        maxes = tl.load(max_ptrs + splits * stride_wsplit, mask=written, other=float("-inf"))
        new_max = tl.maximum(running_max, tl.max(maxes, 0))
        old_weight = tl.exp(running_max - new_max)
        chunk_sum, chunk_acc = _weighed_chunk(
            maxes, sum_ptrs, acc_ptrs, splits, written, dim_ok, new_max, stride_wsplit,
            stride_asplit,
        )  # fmt: skip
        exp_sum = exp_sum * old_weight + chunk_sum
        acc = acc * old_weight + chunk_acc
        running_max = new_max

    out = acc / exp_sum
    out_ptrs = out_ptr + slot * stride_os + head * stride_oh + dims * stride_od
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=dim_ok)


# -- launch ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DecodeTiles:
    """Launch parameters of the split-KV kernel; all static, so numerics never follow data.

    The split size aims at `target_programs` stage-1 programs when every slot is full
    (about 8 per SM on a 132-SM H200, so few slots with long contexts still fill the card),
    rounded up to whole `block_n` blocks and at least `min_split` positions (short splits
    spend more on writing and merging partials than they save).
    """

    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2
    target_programs: int = 1024
    min_split: int = 128


DEFAULT_TILES = DecodeTiles()
MERGE_CHUNK = 32  # splits the merge loads at once: one memory round trip for up to 32


def split_size(slots: int, max_len: int, kv_heads: int, tiles: DecodeTiles = DEFAULT_TILES) -> int:
    """Positions per split, from static shapes only (never from lengths)."""
    splits_wanted = -(-tiles.target_programs // (slots * kv_heads))
    size = -(-max_len // splits_wanted)
    size = max(size, tiles.min_split)
    return -(-size // tiles.block_n) * tiles.block_n


def _partials(
    slots: int, q_heads: int, num_splits: int, head_dim: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage-1 workspace: accumulators (S, Hq, splits, D), maxima and sums (S, Hq, splits)."""
    acc = torch.empty(slots, q_heads, num_splits, head_dim, device=device, dtype=torch.float32)
    stats = torch.empty(2, slots, q_heads, num_splits, device=device, dtype=torch.float32)
    return acc, stats[0], stats[1]


def _check_shapes(q, k_cache, v_cache, lengths) -> None:
    """Static shape and dtype checks (no device data is read)."""
    slots, q_heads, head_dim = q.shape
    if k_cache.shape != v_cache.shape or k_cache.shape[0] != slots or k_cache.shape[3] != head_dim:
        raise ValueError(f"cache shapes {tuple(k_cache.shape)}, {tuple(v_cache.shape)} vs q")
    if q_heads % k_cache.shape[2]:
        raise ValueError(f"{q_heads} query heads are not a multiple of {k_cache.shape[2]}")
    if not q.dtype == k_cache.dtype == v_cache.dtype:
        raise ValueError(f"dtypes differ: q {q.dtype}, k {k_cache.dtype}, v {v_cache.dtype}")
    if lengths.shape != (slots,):
        raise ValueError(f"lengths shape {tuple(lengths.shape)}, expected ({slots},)")


def decode_attention_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    *,
    out: torch.Tensor | None = None,
    tiles: DecodeTiles = DEFAULT_TILES,
) -> torch.Tensor:
    """Split-KV decode attention; same contract as `decode_attention_torch`.

    `out` (S, Hq, D) in q's dtype is written if given. No host sync, graph capturable.
    """
    _check_shapes(q, k_cache, v_cache, lengths)
    slots, q_heads, head_dim = q.shape
    max_len, kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = q_heads // kv_heads
    split = split_size(slots, max_len, kv_heads, tiles)
    num_splits = -(-max_len // split)
    if out is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    acc, maxes, sums = _partials(slots, q_heads, num_splits, head_dim, q.device)
    block_d = max(16, triton.next_power_of_2(head_dim))
    _split_kv_partials_kernel[(slots, kv_heads, num_splits)](
        q, k_cache, v_cache, lengths, acc, maxes, sums, scale,
        *q.stride(), *k_cache.stride(), *v_cache.stride(),
        *acc.stride()[:3], *maxes.stride(),
        GROUP=group,
        HEAD_DIM=head_dim,
        SPLIT_SIZE=split,
        BLOCK_G=max(16, triton.next_power_of_2(group)),
        BLOCK_D=block_d,
        BLOCK_N=tiles.block_n,
        EXACT_FP32=q.dtype == torch.float32,
        num_warps=tiles.num_warps,
        num_stages=tiles.num_stages,
    )  # fmt: skip
    _merge_splits_kernel[(slots, q_heads)](
        acc, maxes, sums, lengths, out,
        *acc.stride()[:3], *maxes.stride(), *out.stride(),
        HEAD_DIM=head_dim,
        SPLIT_SIZE=split,
        NUM_SPLITS=num_splits,
        SPLIT_CHUNK=min(MERGE_CHUNK, max(2, triton.next_power_of_2(num_splits))),
        BLOCK_D=block_d,
        num_warps=4,
    )  # fmt: skip
    return out


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    backend: KernelBackend,
) -> torch.Tensor:
    """Decode attention by `backend`: (S, Hq, D) over positions [0, lengths[s]) of each slot."""
    if backend is KernelBackend.TORCH:
        return decode_attention_torch(q, k_cache, v_cache, lengths, scale)
    if not triton_usable(q.device.type):
        raise RuntimeError(f"Triton kernels cannot run on {q.device.type} here")
    return decode_attention_triton(q, k_cache, v_cache, lengths, scale)


# -- benchmark ---------------------------------------------------------------------------
HBM_BYTES_PER_S = 4.8e12  # H200 peak
# name, slots, cache max_len, query heads, kv heads, head dim, (min, max) context
BENCH_SHAPES = (
    ("ernie c64 ctx2250", 64, 2250, 20, 4, 128, (2250, 2250)),
    ("ernie c64 ctx2000-2500", 64, 2560, 20, 4, 128, (2000, 2500)),
    ("glm c1 ctx5000", 1, 5000, 96, 8, 128, (5000, 5000)),
    ("glm c4 ctx5000", 4, 5000, 96, 8, 128, (5000, 5000)),
    ("glm c16 ctx5000", 16, 5000, 96, 8, 128, (5000, 5000)),
    ("glm c64 ctx5000", 64, 5000, 96, 8, 128, (5000, 5000)),
)
SWEEP_SHAPES = (BENCH_SHAPES[1], BENCH_SHAPES[3], BENCH_SHAPES[5])
SWEEP_TILES = (
    *(
        DecodeTiles(block_n=n, num_warps=w, num_stages=s)
        for n in (32, 64, 128)
        for w in (4, 8)
        for s in (2, 3)
    ),
    DecodeTiles(target_programs=512),
    DecodeTiles(target_programs=2048),
)


def _bench_inputs(slots, max_len, q_heads, kv_heads, head_dim, contexts):
    """bf16 inputs laid out as the engine's cache (one layer of (layers, 2, S, L, Hkv, D)),
    contexts spread evenly over [min, max]."""
    device, dtype = torch.device("cuda"), torch.bfloat16
    cache = torch.randn(2, 2, slots, max_len, kv_heads, head_dim, device=device, dtype=dtype)
    q = torch.randn(slots, q_heads, head_dim, device=device, dtype=dtype)
    lengths = torch.linspace(*contexts, slots, device=device).round().to(torch.int64)
    return q, cache[1, 0], cache[1, 1], lengths


def _graph_median_us(fn) -> float:
    """Median µs of `fn` replayed as a CUDA graph, L2 flushed between replays (do_bench)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm outside the capture
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return triton.testing.do_bench(graph.replay, warmup=10, rep=40, return_mode="median") * 1e3


def _copy_bandwidth() -> float:
    """Measured device-to-device copy rate (bytes read + written per second), 1 GiB."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median") * 1e3
    return 2 * src.numel() / (us * 1e-6)


def _bench_row(name, shape, tiles: DecodeTiles, with_torch: bool) -> str:
    """One table row: kernel time, bytes, bandwidth, and optionally the torch reference."""
    q, keys, values, lengths = _bench_inputs(*shape)
    scale = q.shape[-1] ** -0.5
    try:
        kernel_us = _graph_median_us(
            lambda: decode_attention_triton(q, keys, values, lengths, scale, tiles=tiles)
        )
    except triton.runtime.errors.OutOfResources as error:
        return f"{name:<24} does not fit: {error}"
    row_bytes = keys.shape[2] * keys.shape[3] * keys.element_size() * 2  # K + V, one position
    moved = int(lengths.sum()) * row_bytes + 2 * q.numel() * q.element_size()
    rate = moved / (kernel_us * 1e-6)
    torch_col = ""
    if with_torch:
        torch_us = _graph_median_us(lambda: decode_attention_torch(q, keys, values, lengths, scale))
        torch_col = f" {torch_us:10.1f}"
    split = split_size(q.shape[0], keys.shape[1], keys.shape[2], tiles)
    return (
        f"{name:<24} {split:>6} {kernel_us:9.1f} {moved / 1e6:9.1f} {rate / 1e9:8.0f}"
        f" {rate / HBM_BYTES_PER_S:7.1%}{torch_col}"
    )


def bench(sweep: bool = False) -> None:
    """Print kernel time and bandwidth at the ERNIE / GLM shapes (CUDA only)."""
    if not torch.cuda.is_available() or triton is None:
        sys.exit("the benchmark needs CUDA and Triton")
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"CUDA {torch.version.cuda}; measured D2D copy {_copy_bandwidth() / 1e9:.0f} GB/s")
    print("bf16; graph replay, L2 flushed, median; bytes = K+V of valid positions + q + out")
    header = f"{'shape':<24} {'split':>6} {'µs':>9} {'MB read':>9} {'GB/s':>8} {'of 4.8':>7}"
    for tiles in SWEEP_TILES if sweep else (DEFAULT_TILES,):
        print(f"\n{tiles}")
        print(header + ("" if sweep else f" {'torch µs':>10}"))
        for name, *shape in SWEEP_SHAPES if sweep else BENCH_SHAPES:
            print(_bench_row(name, shape, tiles, with_torch=not sweep), flush=True)
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    """Command line: `--bench` times the kernel; `--sweep` tries every tile config too."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="time the kernel on CUDA")
    parser.add_argument("--sweep", action="store_true", help="time every tile config")
    args = parser.parse_args(argv)
    if not (args.bench or args.sweep):
        parser.print_help()
        return
    with torch.inference_mode():
        bench(sweep=args.sweep)


if __name__ == "__main__":
    main()
