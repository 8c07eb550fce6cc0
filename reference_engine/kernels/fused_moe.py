"""Fused MoE over the routed experts only: the torch reference, the Triton kernels, a dispatcher.

`moe_experts(x, topk_ids, topk_weights, gate_up, down, backend)` computes, per token t,
sum_j topk_weights[t, j] * expert_{topk_ids[t, j]}(x[t]) with the SwiGLU expert
down(silu(x @ gate) * (x @ up)). `gate_up` is (E, H, 2I) (gate = first I columns, up = last
I), `down` is (E, I, H).

The torch reference (`moe_experts_torch`) runs every token through every expert and combines
with dense (N, E) weights: the engine's CPU path, bit-identical to what it has always computed.

The Triton path (`moe_experts_triton`) reads only the experts that are hit, as vLLM's
`fused_moe` does, in four (decode) to six launches, all CUDA-graph capturable, none syncing
the host:

1. align (`align_pairs`: one program when all pairs fit one chunk, else three kernels): the
   N·k (token, expert) pairs are sorted by expert (stable: by pair index within an expert)
   and each expert's group is padded to BLOCK_M, giving `sorted_pair_ids` (padding holds the
   sentinel N·k), the expert of each M-block (-1 past the total) and the total padded count.
   Every size is the static upper bound N·k + min(E, N·k)·(BLOCK_M − 1).
2. gate_up grouped GEMM with SiLU(gate)·up fused in its epilogue -> (N·k, I), row per pair.
3. down grouped GEMM, scaled by each pair's routing weight -> (N·k, H), row per pair.
4. combine: each token sums its k rows in slot order 0..k-1 in fp32 (no atomics).

The GEMM grids are sized from the static bound; a program whose M-block lies past the padded
total (block expert -1) returns at once. Offsets into the expert weights are int64.

Batch invariance: a row of a `tl.dot` depends only on that row of A, so a token's result does
not depend on which other rows share its tile; the K loops run in a fixed order and the tile
config is a function of static shapes only (N, k, E, H, I), never of the routing data.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F

from reference_engine.kernels import KernelBackend

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs without Triton run the torch reference only
    triton = tl = None

_NO_SPECIALIZE = ("num_pairs", "capacity", "fill_span", "num_chunks", "num_blocks", "span")
# Internal buffers come from here; tests swap it for a poisoning allocator.
_empty = torch.empty


def _jit(fn):
    """`triton.jit` when Triton is installed; the plain function otherwise (never launched)."""
    if triton is None:
        return fn
    params = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    names = [n for n in _NO_SPECIALIZE if n in params]
    return triton.jit(fn, do_not_specialize=names)


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


# --------------------------------------------------------------------------------------------
# The torch reference
# --------------------------------------------------------------------------------------------


def dense_routing_weights(
    topk_ids: torch.Tensor, topk_weights: torch.Tensor, num_experts: int, dtype: torch.dtype
) -> torch.Tensor:
    """Dense (N, E) routing weights in `dtype`: the top-k weights, zero for the other experts."""
    shape = (topk_ids.shape[0], num_experts)
    dense = torch.zeros(shape, dtype=torch.float32, device=topk_ids.device)
    return dense.scatter_(1, topk_ids, topk_weights.float()).to(dtype)


def moe_experts_torch(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
) -> torch.Tensor:
    """Every token through every expert (bmm), combined with the dense routing weights."""
    experts = gate_up.shape[0]
    weights = dense_routing_weights(topk_ids, topk_weights, experts, x.dtype)  # (N, E)
    gate, up = torch.bmm(x.expand(experts, *x.shape), gate_up).chunk(2, dim=-1)
    expert_out = torch.bmm(F.silu(gate) * up, down)  # (E, N, H)
    return torch.bmm(weights.unsqueeze(1), expert_out.transpose(0, 1)).squeeze(1)  # (N, H)


# --------------------------------------------------------------------------------------------
# Tile configs: a function of static shapes only
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GemmTile:
    """Tile of one grouped GEMM (BLOCK_M is shared by both GEMMs: see `TileConfig`)."""

    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """BLOCK_M (the padding of each expert's group) and the two GEMMs' tiles."""

    block_m: int
    gate_up: GemmTile
    down: GemmTile

    def __str__(self) -> str:
        def tile(t: GemmTile) -> str:
            return f"n{t.block_n} k{t.block_k} w{t.num_warps} s{t.num_stages}"

        return f"M{self.block_m} gate_up({tile(self.gate_up)}) down({tile(self.down)})"


# Decode: a few pairs per expert, memory-bound; BLOCK_M 16 wastes least on padding, and
# 64x64 weight tiles (128-byte rows) over a 64-deep K step keep enough bytes in flight.
DECODE_TILES = TileConfig(16, GemmTile(64, 64, 4, 4), GemmTile(64, 64, 4, 4))
MIDDLE_TILES = TileConfig(32, GemmTile(64, 64, 4, 4), GemmTile(128, 64, 4, 4))
# Prefill: compute-bound; 64-row blocks use Hopper's warp-group MMA.
PREFILL_TILES = TileConfig(64, GemmTile(64, 64, 4, 3), GemmTile(128, 64, 4, 3))


def choose_tile_config(
    num_tokens: int, top_k: int, num_experts: int, hidden: int, inter_size: int
) -> TileConfig:
    """The tile config for these static shapes; never depends on the routing data."""
    pairs_per_expert = num_tokens * top_k / num_experts
    if pairs_per_expert <= 32:
        config = DECODE_TILES
    elif pairs_per_expert <= 128:
        config = MIDDLE_TILES
    else:
        config = PREFILL_TILES
    return _fit_tiles(config, hidden, inter_size)


def _fit_tiles(config: TileConfig, hidden: int, inter_size: int) -> TileConfig:
    """Shrink N/K tiles that exceed tiny dims (tests), keeping every dot dim >= 16."""

    def fit(tile: GemmTile, n: int, k: int) -> GemmTile:
        return dataclasses.replace(
            tile,
            block_n=min(tile.block_n, max(16, _next_pow2(n))),
            block_k=min(tile.block_k, max(16, _next_pow2(k))),
        )

    return dataclasses.replace(
        config,
        gate_up=fit(config.gate_up, inter_size, hidden),
        down=fit(config.down, hidden, inter_size),
    )


# --------------------------------------------------------------------------------------------
# Align: sort the (token, expert) pairs by expert, pad each expert's group to BLOCK_M
# --------------------------------------------------------------------------------------------


class PairAlignment(NamedTuple):
    """Pairs grouped by expert, in BLOCK_M blocks; sizes are static upper bounds.

    sorted_pair_ids: (capacity,) int32, pair index (token * k + slot) per row, sentinel N·k
        in padding and past the total. block_expert: (num_blocks,) int32, the expert of each
        BLOCK_M rows, -1 past the total. total_padded: (1,) int32, rows in use.
    """

    sorted_pair_ids: torch.Tensor
    block_expert: torch.Tensor
    total_padded: torch.Tensor


# Loops whose bounds are data sizes are `while` loops: Triton 3.6's interpreter cannot take a
# runtime scalar as a `range` bound under NumPy >= 2.4. (The GEMMs' K loops run over
# constexpr model dims with `range`, which Triton software-pipelines.)


@_jit
def _chunk_one_hot(topk_ids_ptr, chunk, num_pairs, CHUNK: tl.constexpr, EXPERTS: tl.constexpr):
    """One chunk of pairs: their indices, which exist, and the (CHUNK, EXPERTS) one-hot of
    their experts (a zero row for a pair past the end or with an expert outside [0, E))."""
    pairs = chunk * CHUNK + tl.arange(0, CHUNK)
    pair_ok = pairs < num_pairs
    expert_of_pair = tl.load(topk_ids_ptr + pairs, mask=pair_ok, other=-1).to(tl.int32)
    one_hot = (expert_of_pair[:, None] == tl.arange(0, EXPERTS)[None, :]).to(tl.int32)
    return pairs, pair_ok, one_hot


@_jit
def _rank_in_chunk(one_hot):
    """Each pair's rank among the chunk's pairs of the same expert, by pair index."""
    return tl.sum(one_hot * tl.cumsum(one_hot, axis=0), axis=1) - 1


@_jit
def _fill_sentinel(sorted_pair_ids_ptr, first, span, capacity, sentinel, FILL_BLOCK: tl.constexpr):
    """sorted_pair_ids[first : first + span] (clipped to the capacity) = sentinel."""
    offset = 0
    while offset < span:
        rows = first + offset + tl.arange(0, FILL_BLOCK)
        values = tl.zeros([FILL_BLOCK], tl.int32) + sentinel
        tl.store(sorted_pair_ids_ptr + rows, values, mask=rows < capacity)
        offset += FILL_BLOCK


@_jit
def _expert_offsets(
    counts, expert_offsets_ptr, num_experts, BLOCK_M: tl.constexpr, EXPERTS: tl.constexpr
):
    """Each expert's count padded to BLOCK_M, laid end to end: stores each expert's first
    row and, at [E], the total; returns (starts, ends, total)."""
    experts = tl.arange(0, EXPERTS)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    total = tl.sum(padded, axis=0)
    tl.store(expert_offsets_ptr + experts, ends - padded, mask=experts < num_experts)
    tl.store(expert_offsets_ptr + num_experts, total)
    return ends - padded, ends, total


@_jit
def _store_block_experts(
    block_expert_ptr,
    ends,
    total,
    num_experts,
    num_blocks,
    BLOCK_M: tl.constexpr,
    EXPERTS: tl.constexpr,
    ROWS: tl.constexpr,
):
    """The expert of each M-block (the number of experts ending at or before its first row),
    -1 past the total."""
    expert_ok = tl.arange(0, EXPERTS) < num_experts
    first = 0
    while first < num_blocks:
        blocks = first + tl.arange(0, ROWS)
        block_row = blocks * BLOCK_M
        finished = (ends[None, :] <= block_row[:, None]) & expert_ok[None, :]
        expert = tl.sum(finished.to(tl.int32), axis=1)
        expert = tl.where(block_row < total, expert, -1)
        tl.store(block_expert_ptr + blocks, expert, mask=blocks < num_blocks)
        first += ROWS


@_jit
def _align_single_kernel(
    topk_ids_ptr,
    sorted_pair_ids_ptr,
    block_expert_ptr,
    expert_offsets_ptr,
    num_pairs,
    num_experts,
    capacity,
    num_blocks,
    BLOCK_M: tl.constexpr,
    CHUNK: tl.constexpr,
    EXPERTS: tl.constexpr,
    FILL_BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
):
    """The whole alignment in one program, when every pair fits one chunk (decode)."""
    pairs, pair_ok, one_hot = _chunk_one_hot(topk_ids_ptr, 0, num_pairs, CHUNK, EXPERTS)
    counts = tl.sum(one_hot, axis=0)
    starts, ends, total = _expert_offsets(counts, expert_offsets_ptr, num_experts, BLOCK_M, EXPERTS)
    _fill_sentinel(sorted_pair_ids_ptr, 0, capacity, capacity, num_pairs, FILL_BLOCK)
    tl.debug_barrier()  # every sentinel is written before the pairs overwrite some
    rows = tl.sum(one_hot * starts[None, :], axis=1) + _rank_in_chunk(one_hot)
    real = pair_ok & (tl.sum(one_hot, axis=1) > 0)
    tl.store(sorted_pair_ids_ptr + rows, pairs, mask=real)
    _store_block_experts(
        block_expert_ptr, ends, total, num_experts, num_blocks, BLOCK_M, EXPERTS, ROWS
    )


@_jit
def _align_count_kernel(
    topk_ids_ptr,
    pair_rank_ptr,
    chunk_counts_ptr,
    sorted_pair_ids_ptr,
    num_pairs,
    num_experts,
    capacity,
    fill_span,
    CHUNK: tl.constexpr,
    EXPERTS: tl.constexpr,
    FILL_BLOCK: tl.constexpr,
):
    """Per chunk of pairs: each expert's count and each pair's rank in the chunk among its
    expert's pairs. Also fills the chunk's share of `sorted_pair_ids` with the sentinel."""
    chunk = tl.program_id(0)
    pairs, pair_ok, one_hot = _chunk_one_hot(topk_ids_ptr, chunk, num_pairs, CHUNK, EXPERTS)
    tl.store(pair_rank_ptr + pairs, _rank_in_chunk(one_hot), mask=pair_ok)
    experts = tl.arange(0, EXPERTS)
    counts = tl.sum(one_hot, axis=0)
    tl.store(chunk_counts_ptr + chunk * num_experts + experts, counts, mask=experts < num_experts)
    _fill_sentinel(
        sorted_pair_ids_ptr, chunk * fill_span, fill_span, capacity, num_pairs, FILL_BLOCK
    )


@_jit
def _align_offsets_kernel(
    chunk_counts_ptr,
    chunk_base_ptr,
    expert_offsets_ptr,
    block_expert_ptr,
    num_chunks,
    num_experts,
    num_blocks,
    BLOCK_M: tl.constexpr,
    EXPERTS: tl.constexpr,
    ROWS: tl.constexpr,
):
    """One program: per (chunk, expert) the expert's pairs in earlier chunks; the experts'
    padded offsets; the expert of each M-block."""
    experts = tl.arange(0, EXPERTS)
    expert_ok = experts < num_experts
    counts = tl.zeros([EXPERTS], tl.int32)
    first = 0
    while first < num_chunks:
        chunks = first + tl.arange(0, ROWS)
        offsets = chunks[:, None] * num_experts + experts[None, :]
        mask = (chunks[:, None] < num_chunks) & expert_ok[None, :]
        chunk_counts = tl.load(chunk_counts_ptr + offsets, mask=mask, other=0)
        before = tl.cumsum(chunk_counts, axis=0) - chunk_counts + counts[None, :]
        tl.store(chunk_base_ptr + offsets, before, mask=mask)
        counts += tl.sum(chunk_counts, axis=0)
        first += ROWS
    _, ends, total = _expert_offsets(counts, expert_offsets_ptr, num_experts, BLOCK_M, EXPERTS)
    _store_block_experts(
        block_expert_ptr, ends, total, num_experts, num_blocks, BLOCK_M, EXPERTS, ROWS
    )


@_jit
def _align_scatter_kernel(
    topk_ids_ptr,
    pair_rank_ptr,
    chunk_base_ptr,
    expert_offsets_ptr,
    sorted_pair_ids_ptr,
    num_pairs,
    num_experts,
    CHUNK: tl.constexpr,
):
    """Per chunk: each pair to row (its expert's start + earlier chunks' pairs of that expert
    + its rank in the chunk)."""
    chunk = tl.program_id(0)
    pairs = chunk * CHUNK + tl.arange(0, CHUNK)
    expert = tl.load(topk_ids_ptr + pairs, mask=pairs < num_pairs, other=-1).to(tl.int32)
    pair_ok = (pairs < num_pairs) & (expert >= 0) & (expert < num_experts)
    rank = tl.load(pair_rank_ptr + pairs, mask=pair_ok, other=0)
    before = tl.load(chunk_base_ptr + chunk * num_experts + expert, mask=pair_ok, other=0)
    start = tl.load(expert_offsets_ptr + expert, mask=pair_ok, other=0)
    tl.store(sorted_pair_ids_ptr + start + before + rank, pairs, mask=pair_ok)


def align_capacity(num_pairs: int, num_experts: int, block_m: int) -> int:
    """Static upper bound on the padded row count: N·k + min(E, N·k)·(BLOCK_M − 1)."""
    return num_pairs + min(num_experts, num_pairs) * (block_m - 1)


def align_chunk(num_experts: int) -> int:
    """Pairs per align program: keeps the (chunk, experts) one-hot near 8 K elements."""
    return min(256, max(16, 8192 // _next_pow2(num_experts)))


def align_pairs(
    topk_ids: torch.Tensor, num_experts: int, block_m: int, chunk: int | None = None
) -> PairAlignment:
    """Group the N·k pairs of `topk_ids` (N, k) by expert in BLOCK_M blocks, on the device.

    Static sizes, no host sync: one program when every pair fits one chunk (decode), else
    three launches (per-chunk counts and ranks; offsets; scatter). `chunk` (pairs per
    program, a power of two) is exposed for tests; the default comes from E.
    """
    ids = topk_ids.reshape(-1)
    num_pairs = ids.numel()
    capacity = align_capacity(num_pairs, num_experts, block_m)
    num_blocks = triton.cdiv(capacity, block_m)
    chunk = chunk or align_chunk(num_experts)
    num_chunks = triton.cdiv(num_pairs, chunk)
    experts = max(16, _next_pow2(num_experts))
    rows, fill_block = max(16, 4096 // experts), 256
    table = num_chunks * num_experts if num_chunks > 1 else 0
    sizes = [num_experts + 1, capacity, num_blocks, num_pairs if table else 0, table, table]
    ints = _empty(sum(sizes), dtype=torch.int32, device=ids.device)
    expert_offsets, sorted_ids, block_expert, pair_rank, chunk_counts, chunk_base = ints.split(
        sizes
    )
    alignment = PairAlignment(sorted_ids, block_expert, expert_offsets[num_experts:])
    if num_chunks == 1:
        _align_single_kernel[(1,)](
            ids, sorted_ids, block_expert, expert_offsets, num_pairs, num_experts, capacity,
            num_blocks, BLOCK_M=block_m, CHUNK=chunk, EXPERTS=experts, FILL_BLOCK=fill_block,
            ROWS=rows, num_warps=8,
        )  # fmt: skip
        return alignment
    fill_span = triton.cdiv(triton.cdiv(capacity, num_chunks), fill_block) * fill_block
    _align_count_kernel[(num_chunks,)](
        ids, pair_rank, chunk_counts, sorted_ids, num_pairs, num_experts, capacity, fill_span,
        CHUNK=chunk, EXPERTS=experts, FILL_BLOCK=fill_block, num_warps=8,
    )  # fmt: skip
    _align_offsets_kernel[(1,)](
        chunk_counts, chunk_base, expert_offsets, block_expert, num_chunks, num_experts,
        num_blocks, BLOCK_M=block_m, EXPERTS=experts, ROWS=rows, num_warps=8,
    )  # fmt: skip
    _align_scatter_kernel[(num_chunks,)](
        ids, pair_rank, chunk_base, expert_offsets, sorted_ids, num_pairs, num_experts,
        CHUNK=chunk, num_warps=4,
    )  # fmt: skip
    return alignment


# --------------------------------------------------------------------------------------------
# Grouped GEMMs and the combine
# --------------------------------------------------------------------------------------------


@_jit
def _block_pairs(sorted_pair_ids_ptr, block, num_pairs, BLOCK_M: tl.constexpr):
    """The pairs of one M-block (int64; padding rows read pair 0) and which of them are real."""
    pair = tl.load(sorted_pair_ids_ptr + block * BLOCK_M + tl.arange(0, BLOCK_M))
    pair_ok = pair < num_pairs
    return tl.where(pair_ok, pair, 0).to(tl.int64), pair_ok


@_jit
def _gate_up_silu_kernel(
    x_ptr,
    gate_up_ptr,
    inter_ptr,
    sorted_pair_ids_ptr,
    block_expert_ptr,
    num_pairs,
    stride_x,
    stride_w_expert,
    stride_w_row,
    stride_inter,
    HIDDEN: tl.constexpr,
    INTER: tl.constexpr,
    TOP_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """inter[pair, cols] = silu(x[token] @ gate[e]) * (x[token] @ up[e]) for one M-block."""
    pid = tl.program_id(0)
    n_tiles: tl.constexpr = (INTER + BLOCK_N - 1) // BLOCK_N
    block = pid // n_tiles
    expert = tl.load(block_expert_ptr + block).to(tl.int64)
    if expert < 0:  # past the padded total: nothing to do
        return
    pair, pair_ok = _block_pairs(sorted_pair_ids_ptr, block, num_pairs, BLOCK_M)
    cols = (pid % n_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
    safe_cols = cols % INTER  # in range: loads need no mask, stores use `cols`
    ks = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + (pair // TOP_K)[:, None] * stride_x + ks[None, :]
    gate_ptrs = (
        gate_up_ptr + expert * stride_w_expert + ks[:, None] * stride_w_row + safe_cols[None, :]
    )
    acc_gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, HIDDEN, BLOCK_K):
        if HIDDEN % BLOCK_K == 0:
            a = tl.load(x_ptrs)
            gate = tl.load(gate_ptrs)
            up = tl.load(gate_ptrs + INTER)
        else:
            k_ok = ks < HIDDEN - k0
            a = tl.load(x_ptrs, mask=k_ok[None, :], other=0.0)
            gate = tl.load(gate_ptrs, mask=k_ok[:, None], other=0.0)
            up = tl.load(gate_ptrs + INTER, mask=k_ok[:, None], other=0.0)
        acc_gate = tl.dot(a, gate, acc_gate, input_precision=PRECISION)
        acc_up = tl.dot(a, up, acc_up, input_precision=PRECISION)
        x_ptrs += BLOCK_K
        gate_ptrs += BLOCK_K * stride_w_row
    act = acc_gate * tl.sigmoid(acc_gate) * acc_up
    out_ptrs = inter_ptr + pair[:, None] * stride_inter + cols[None, :]
    mask = pair_ok[:, None] & (cols < INTER)[None, :]
    tl.store(out_ptrs, act.to(inter_ptr.dtype.element_ty), mask=mask)


@_jit
def _down_kernel(
    inter_ptr,
    down_ptr,
    pair_out_ptr,
    topk_weights_ptr,
    sorted_pair_ids_ptr,
    block_expert_ptr,
    num_pairs,
    stride_inter,
    stride_w_expert,
    stride_w_row,
    stride_out,
    INTER: tl.constexpr,
    HIDDEN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """pair_out[pair, cols] = weight[pair] * (inter[pair] @ down[e]) for one M-block."""
    pid = tl.program_id(0)
    n_tiles: tl.constexpr = (HIDDEN + BLOCK_N - 1) // BLOCK_N
    block = pid // n_tiles
    expert = tl.load(block_expert_ptr + block).to(tl.int64)
    if expert < 0:  # past the padded total: nothing to do
        return
    pair, pair_ok = _block_pairs(sorted_pair_ids_ptr, block, num_pairs, BLOCK_M)
    cols = (pid % n_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
    safe_cols = cols % HIDDEN
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = inter_ptr + pair[:, None] * stride_inter + ks[None, :]
    w_ptrs = down_ptr + expert * stride_w_expert + ks[:, None] * stride_w_row + safe_cols[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, INTER, BLOCK_K):
        if INTER % BLOCK_K == 0:
            a = tl.load(a_ptrs)
            w = tl.load(w_ptrs)
        else:
            k_ok = ks < INTER - k0
            a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
            w = tl.load(w_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_w_row
    acc *= tl.load(topk_weights_ptr + pair)[:, None]
    out_ptrs = pair_out_ptr + pair[:, None] * stride_out + cols[None, :]
    mask = pair_ok[:, None] & (cols < HIDDEN)[None, :]
    tl.store(out_ptrs, acc.to(pair_out_ptr.dtype.element_ty), mask=mask)


@_jit
def _combine_kernel(
    pair_out_ptr, out_ptr, stride_pair, stride_out, HIDDEN: tl.constexpr, TOP_K: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """out[t] = sum over slots j = 0..k-1, in that order, of pair_out[t * k + j] (fp32)."""
    token = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    col_ok = cols < HIDDEN
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for slot in tl.static_range(TOP_K):
        row = pair_out_ptr + (token * TOP_K + slot) * stride_pair
        acc += tl.load(row + cols, mask=col_ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + token * stride_out + cols, acc.to(out_ptr.dtype.element_ty), mask=col_ok)


def moe_experts_triton(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
    config: TileConfig | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The routed experts with the Triton kernels; reads only the experts that are hit.

    `config` defaults to `choose_tile_config` of the shapes; `out` (N, H) may be given.
    """
    num_tokens, hidden = x.shape
    num_experts, _, two_inter = gate_up.shape
    inter_size, top_k = two_inter // 2, topk_ids.shape[1]
    if gate_up.shape[1] != hidden or down.shape != (num_experts, inter_size, hidden):
        raise ValueError(f"expert shapes {tuple(gate_up.shape)}, {tuple(down.shape)} vs x")
    config = config or choose_tile_config(num_tokens, top_k, num_experts, hidden, inter_size)
    out = _empty((num_tokens, hidden), dtype=x.dtype, device=x.device) if out is None else out
    if num_tokens == 0:
        return out
    x, gate_up, down = x.contiguous(), gate_up.contiguous(), down.contiguous()
    weights = topk_weights.float().contiguous()
    align = align_pairs(topk_ids, num_experts, config.block_m)
    num_pairs, num_blocks = num_tokens * top_k, align.block_expert.numel()
    inter = _empty((num_pairs, inter_size), dtype=x.dtype, device=x.device)
    pair_out = _empty((num_pairs, hidden), dtype=x.dtype, device=x.device)
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    block_rows = (align.sorted_pair_ids, align.block_expert, num_pairs)
    tile = config.gate_up
    _gate_up_silu_kernel[(num_blocks * triton.cdiv(inter_size, tile.block_n),)](
        x, gate_up, inter, *block_rows,
        x.stride(0), gate_up.stride(0), gate_up.stride(1), inter.stride(0),
        HIDDEN=hidden, INTER=inter_size, TOP_K=top_k,
        BLOCK_M=config.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.block_k, PRECISION=precision,
        num_warps=tile.num_warps, num_stages=tile.num_stages,
    )  # fmt: skip
    tile = config.down
    _down_kernel[(num_blocks * triton.cdiv(hidden, tile.block_n),)](
        inter, down, pair_out, weights, *block_rows,
        inter.stride(0), down.stride(0), down.stride(1), pair_out.stride(0),
        INTER=inter_size, HIDDEN=hidden,
        BLOCK_M=config.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.block_k, PRECISION=precision,
        num_warps=tile.num_warps, num_stages=tile.num_stages,
    )  # fmt: skip
    block = min(1024, _next_pow2(hidden))
    _combine_kernel[(num_tokens, triton.cdiv(hidden, block))](
        pair_out, out, pair_out.stride(0), out.stride(0), HIDDEN=hidden, TOP_K=top_k, BLOCK=block,
        num_warps=4,
    )  # fmt: skip
    return out


def moe_experts(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
    backend: KernelBackend,
) -> torch.Tensor:
    """The routed experts' combined output (N, H) in x.dtype, by `backend`.

    x: (N, H); topk_ids: (N, k) int64; topk_weights: (N, k) fp32 (scale included);
    gate_up: (E, H, 2I); down: (E, I, H).
    """
    if backend == KernelBackend.TRITON:
        return moe_experts_triton(x, topk_ids, topk_weights, gate_up, down)
    return moe_experts_torch(x, topk_ids, topk_weights, gate_up, down)


# --------------------------------------------------------------------------------------------
# Benchmark: python -m reference_engine.kernels.fused_moe --bench
# --------------------------------------------------------------------------------------------

BENCH_PRESETS = {  # num_experts, top_k, hidden, inter, router kind (the real models' MoE)
    "ernie-4.5-21b-a3b": (64, 6, 2560, 1536, "softmax"),
    "glm-4.5-air": (128, 8, 4096, 1408, "sigmoid"),
}
BENCH_TOKENS = (1, 4, 16, 64)
SWEEP_TOKENS = (4, 64)
HBM_BYTES_PER_S = 4.8e12  # H200
# --sweep candidates: (BLOCK_M, gate_up (n, k, warps, stages), down (n, k, warps, stages)).
SWEEP_TILES = [
    TileConfig(bm, GemmTile(*gate_up), GemmTile(*down))
    for bm, gate_up, down in (
        (16, (64, 64, 4, 4), (64, 64, 4, 4)),
        (16, (32, 64, 4, 4), (64, 64, 4, 4)),
        (16, (64, 64, 4, 5), (64, 64, 4, 5)),
        (16, (64, 128, 4, 3), (64, 128, 4, 3)),
        (16, (128, 64, 4, 4), (128, 64, 4, 4)),
        (16, (32, 128, 4, 4), (32, 128, 4, 4)),
        (32, (64, 64, 4, 4), (64, 64, 4, 4)),
        (32, (64, 128, 4, 3), (128, 64, 4, 3)),
        (64, (32, 64, 4, 4), (64, 64, 4, 4)),
        (64, (64, 64, 4, 3), (128, 64, 4, 3)),
    )
]


def _bench_weights(preset: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """bf16 expert and router weights drawn as the model builder draws them."""
    num_experts, _, hidden, inter, _ = BENCH_PRESETS[preset]

    def normal(*shape: int, std: float = 0.02) -> torch.Tensor:
        values = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
        return values * std

    return {
        "gate_up": normal(num_experts, hidden, 2 * inter),
        "down": normal(num_experts, inter, hidden),
        "router": normal(num_experts, hidden),
        "correction_bias": normal(num_experts, std=0.1),
    }


def _bench_routing(preset, weights, num_tokens, routing, generator):
    """Unit-scale bf16 activations and their routing.

    "uniform": each token's k experts uniformly at random (a trained router's spread);
    "engine": the preset's random router and correction bias, as the model builder draws
    them (the bias dominates ERNIE's softmax scores: few experts, many tokens each).
    """
    from reference_engine.moe import route  # moe.py imports this module

    num_experts, top_k, hidden, _, router_kind = BENCH_PRESETS[preset]
    x = torch.randn(num_tokens, hidden, generator=generator, device="cuda").to(torch.bfloat16)
    topk_weights, topk_ids = route(
        x, weights["router"], weights["correction_bias"], top_k, router_kind, True, 1.0
    )
    if routing == "uniform":
        scores = torch.rand(num_tokens, num_experts, generator=generator, device="cuda")
        topk_ids = scores.topk(top_k, dim=-1).indices
    return x, topk_ids, topk_weights


def _median_us(fn) -> float:
    """Median time of `fn` in µs, replayed from a CUDA graph (no launch overhead)."""
    return triton.testing.do_bench_cudagraph(fn, rep=30, return_mode="median") * 1e3


def _bench_case(preset, weights, num_tokens, routing, generator, sweep: bool) -> str:
    """One row of the benchmark table (and, with `sweep`, the best tile config found)."""
    num_experts, top_k, hidden, inter, _ = BENCH_PRESETS[preset]
    x, ids, topk_weights = _bench_routing(preset, weights, num_tokens, routing, generator)
    gate_up, down = weights["gate_up"], weights["down"]
    counts = torch.bincount(ids.reshape(-1), minlength=num_experts)  # host sync: not timed
    hit, busiest = int((counts > 0).sum()), int(counts.max())
    expert_bytes = hit * 3 * hidden * inter * gate_up.element_size()
    config = choose_tile_config(num_tokens, top_k, num_experts, hidden, inter)

    def experts_op(tiles: TileConfig = config) -> torch.Tensor:
        return moe_experts_triton(x, ids, topk_weights, gate_up, down, tiles)

    triton_us = _median_us(experts_op)
    align_us = _median_us(lambda: align_pairs(ids, num_experts, config.block_m))
    torch_us = _median_us(lambda: moe_experts_torch(x, ids, topk_weights, gate_up, down))
    rate = expert_bytes / (triton_us * 1e-6)
    row = (
        f"{preset:18} {routing:8} {num_tokens:>4} {hit:>4}/{num_experts:<4} {busiest:>4}"
        f" {triton_us:>9.1f} {align_us:>6.1f} {expert_bytes / 1e9:>7.3f} {rate / 1e9:>6.0f}"
        f" {rate / HBM_BYTES_PER_S:>6.1%} {torch_us:>9.1f}"
    )
    if sweep and num_tokens in SWEEP_TOKENS:
        timings = {tiles: _median_us(lambda t=tiles: experts_op(t)) for tiles in SWEEP_TILES}
        for tiles, us in sorted(timings.items(), key=lambda item: item[1])[:3]:
            fraction = expert_bytes / (us * 1e-6) / HBM_BYTES_PER_S
            row += f"\n    sweep {us:8.1f} µs {fraction:6.1%}  {tiles}"
    return row


def bench(sweep: bool = False) -> None:
    """Time the Triton experts op at the presets' decode shapes and print a table."""
    if not torch.cuda.is_available() or triton is None:
        sys.exit("--bench needs a CUDA GPU and Triton")
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}, "
          f"triton {triton.__version__}, CUDA {torch.version.cuda}")  # fmt: skip
    print("CUDA-graph replay, median. GB/s: bytes of the experts hit (each once) / time;")
    print("busy: pairs on the busiest expert; triton µs includes align (shown alone too)")
    print(f"{'preset':18} {'routing':8} {'N':>4} {'hit':>9} {'busy':>4} {'triton µs':>9}"
          f" {'align':>6} {'GB':>7} {'GB/s':>6} {'of 4.8':>6} {'torch µs':>9}")  # fmt: skip
    generator = torch.Generator("cuda").manual_seed(0)
    for preset in BENCH_PRESETS:
        weights = _bench_weights(preset, generator)
        for routing in ("uniform", "engine"):
            for num_tokens in BENCH_TOKENS:
                row = _bench_case(preset, weights, num_tokens, routing, generator, sweep)
                print(row, flush=True)
        del weights
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    """Command line: `--bench` prints the benchmark table (`--sweep` also tries tile configs)."""
    parser = argparse.ArgumentParser(prog="python -m reference_engine.kernels.fused_moe")
    parser.add_argument("--bench", action="store_true", help="time the experts op on CUDA")
    parser.add_argument("--sweep", action="store_true", help="also sweep tile configs (N 4, 64)")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return
    bench(sweep=args.sweep)


if __name__ == "__main__":
    # Run the package's copy of this module (the package imports it before runpy runs this).
    from reference_engine.kernels import fused_moe

    fused_moe.main()
