"""Sampling without a full-vocabulary sort: the torch reference and a Triton kernel.

Semantics (both paths): the margin is the top-2 difference of the raw logits; a greedy row
(temperature <= 0) takes the argmax (first index on ties). A sampled row scales by
1 / max(temperature, 1e-5), orders the vocabulary by (scaled value desc, token id asc) -- the
order of a stable descending sort -- keeps the first `top_k` (0 = all), then, with the
softmax over that set, keeps a token when the mass strictly before it is < top_p (the top
token always stays), and returns the kept token maximising scaled + Gumbel noise, the noise
a hash of (seed, position, token id) (`reference_engine.sampler.gumbel_noise`).

The kept set is always a prefix of that order, so the kernel never sorts the vocabulary.
Two launches, grids from static shapes:

1. `_top2_partials_kernel`, grid (rows, vocab / 4096): each segment's max, first argmax and
   second max. `_sample_kernel`, grid (rows,), merges a row's segments in order: margin and
   argmax, bit-exact. Greedy rows (and nothing else) stop there.
2. Pass 1 over the row: for 8 thresholds t = max - 0.5, 1, 2 ... 64 (in logits; in scaled
   units when T > 1), the count and the unnormalised softmax mass of the tokens with
   scaled >= t, and the total mass. The prefix end is bracketed between two thresholds: by
   count for top-k, by mass for top-p (after top-k, with the top-k normaliser).
3. While the bracket holds more than C = 1024 tokens, a refinement pass re-splits it (7
   thresholds evenly in value, one at its midpoint in float-bit order, so each pass at
   least halves its bit range). top-k rows and peaked top-p rows need none.
4. A compaction pass writes the <= C ids inside the bracket to a per-row workspace (warp-
   aggregated relaxed atomics: any order, the block is sorted next); the program sorts
   their (scaled bits, id) keys in registers (`tl.sort`), giving exact ranks, the top-k
   normaliser and the exclusive masses by a `tl.cumsum` -- the reference's arithmetic on
   <= C tokens.
5. Gumbel-max over the sorted block when it holds every kept token (the common case), else
   one pass over the row with the kept prefix as (cut value, number of kept ties at it).
Special cases: > C exact ties in the bracket (equal logits) are counted off by id
arithmetically; a top-p bracket of > C tokens lighter than EPS_CUT of the mass is cut at
its top (within the tolerance below); top_p <= 0 or NaN is top-k 1; no top-k and top_p >= 1
skip straight to the Gumbel pass. Reads of the row: greedy 1; common sampled 3 (top-2,
pass 1, compaction); large nuclei 3 + refinements + 1.

Equivalence with `sample_torch`:
- margins and greedy tokens are bit-identical (same maxima, same first index);
- top-k by rank is exact (ties at the cut by id, as the stable sort);
- top-p compares exclusive masses summed in another order than torch's softmax + `cumsum`.
  The kept set equals the reference's except for tokens whose exclusive mass, as the
  reference computes it, lies within TOP_P_TOLERANCE = 1e-4 of top_p: the two fp32
  computations of a mass differ by ~1e-6 typically (the kernel's own worst-case rounding
  bound at 151,552 tokens is ~7e-5), and the EPS_CUT shortcut adds at most 1e-5. The tests
  check exactly that, through the kept-set size the kernel reports;
- the noise is bit-identical on CUDA (same uint32 hash; libdevice `logf` without
  flush-to-zero, as torch's CUDA `log`); in Triton's interpreter numpy's `log` may differ
  from torch's CPU `log` in the last bit. When the kept sets agree the sampled token is the
  reference's; when they differ it is the Gumbel-max over the kernel's own prefix.
Logits must be finite (an LM head's are); NaN logits are not handled.

Invariants: no host sync, launch configuration from static shapes only (graph capturable),
and each row reads only its own logits and parameters (batch invariant; the atomics only
order the block before its sort, so results are deterministic).

Room for `issues show 13` (logprobs): the top-2 segments can carry a log-sum-exp of the raw
logits (raw logprobs); the sorted block holds the head of the distribution in order (top-n
logprobs); the row program has m_s, the normaliser and the sampled token's scaled value
(its processed logprob, in the block or in the Gumbel pass).

`python -m reference_engine.kernels.sampling --bench` times it on CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

from reference_engine.kernels import KernelBackend, triton_usable
from reference_engine.sampler import SamplingTensors, gumbel_noise

try:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice
except ImportError:  # the torch reference needs no Triton
    triton = tl = libdevice = None

TOP_P_TOLERANCE = 1e-4  # documented bound on |exclusive mass - top_p| where kept sets differ
EPS_CUT = 1e-5  # a top-p bracket lighter than this share of the mass is cut at its top
MIN_TEMPERATURE = 1e-5


def _jit(fn):
    """`triton.jit` where Triton is installed; without it the kernel is never launched."""
    return fn if triton is None else triton.jit(fn)


# -- torch reference ---------------------------------------------------------------------
def sample_torch(
    logits: torch.Tensor, params: SamplingTensors
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of fp32 logits (N, V) with a full-vocabulary sort.

    Returns the tokens (N,) and the top-2 logit margin (N,) used to tell numerical
    near-ties from logic errors when two runs diverge.
    """
    vocab = logits.shape[-1]
    top2 = logits.topk(2, dim=-1).values  # (N, 2)
    margin = top2[:, 0] - top2[:, 1]
    greedy = logits.argmax(dim=-1)

    scaled = logits / params.temperature.clamp_min(MIN_TEMPERATURE)[:, None]
    sorted_logits, sorted_ids = scaled.sort(dim=-1, descending=True, stable=True)  # (N, V)
    ranks = torch.arange(vocab, device=logits.device)
    k = torch.where(params.top_k > 0, params.top_k, vocab)
    in_top_k = ranks[None, :] < k[:, None]
    probs = sorted_logits.masked_fill(~in_top_k, float("-inf")).softmax(dim=-1)
    # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
    in_top_p = (probs.cumsum(dim=-1) - probs) < params.top_p[:, None]
    noise = gumbel_noise(params.seed, params.position, sorted_ids)  # keyed by token id
    perturbed = (sorted_logits + noise).masked_fill(~(in_top_k & in_top_p), float("-inf"))
    sampled = sorted_ids.gather(1, perturbed.argmax(dim=-1, keepdim=True)).squeeze(1)
    return torch.where(params.temperature > 0, sampled, greedy), margin


# -- Triton: noise -----------------------------------------------------------------------
@_jit
def _mix32(x):
    """`sampler._mix32` on uint32 tensors (multiplication wraps mod 2**32)."""
    x = x ^ (x >> 16)
    x = x * 0x45D9F3B
    x = x ^ (x >> 16)
    x = x * 0x45D9F3B
    return x ^ (x >> 16)


@_jit
def _noise_key(seed, position):
    """The per-row hash key of `gumbel_noise` from int64 seed and position scalars."""
    folded_seed = (seed ^ (seed >> 32)).to(tl.uint32)  # arithmetic shift, as torch's
    return _mix32(_mix32(folded_seed) ^ position.to(tl.uint32))


@_jit
def _log(x, LIBDEVICE: tl.constexpr):
    """Natural log: libdevice `logf` (torch's CUDA `log`) when compiled, numpy's otherwise."""
    if LIBDEVICE:
        return libdevice.log(x)
    return tl.log(x)


@_jit
def _gumbel_from_bits(bits, LIBDEVICE: tl.constexpr):
    """Gumbel(0, 1) from uint32 hash bits: the top 23 bits to (0, 1), then -log(-log(u))."""
    uniform = ((bits >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07  # * 2**-23
    return -_log(-_log(uniform, LIBDEVICE), LIBDEVICE)


@_jit
def _noise(key, token_ids, LIBDEVICE: tl.constexpr):
    """`gumbel_noise` for one row: key from `_noise_key`, int32 token ids."""
    return _gumbel_from_bits(_mix32(key ^ token_ids.to(tl.uint32)), LIBDEVICE)


@_jit
def _noise_kernel(
    seed_ptr, position_ptr, ids_ptr, out_ptr, VOCAB: tl.constexpr, BLOCK: tl.constexpr,
    LIBDEVICE: tl.constexpr,
):  # fmt: skip
    """Test hook: out[r, :] = gumbel noise of ids[r, :] for row r's seed and position."""
    row = tl.program_id(0)
    key = _noise_key(tl.load(seed_ptr + row).to(tl.int64), tl.load(position_ptr + row).to(tl.int64))
    base = row.to(tl.int64) * VOCAB
    offs = tl.arange(0, BLOCK)
    for start in range(0, VOCAB, BLOCK):
        valid = start + offs < VOCAB
        ids = tl.load(ids_ptr + base + start + offs, mask=valid, other=0).to(tl.int32)
        tl.store(out_ptr + base + start + offs, _noise(key, ids, LIBDEVICE), mask=valid)


@_jit
def _bits_noise_kernel(bits_ptr, out_ptr, n, BLOCK: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Test hook: Gumbel noise of raw hash bits (int64 holding uint32 values)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    bits = tl.load(bits_ptr + offs, mask=offs < n, other=0).to(tl.uint32)
    tl.store(out_ptr + offs, _gumbel_from_bits(bits, LIBDEVICE), mask=offs < n)


# -- Triton: top-2 -----------------------------------------------------------------------
@_jit
def _top2_partials_kernel(
    logits_ptr, stride_row, vocab, seg_max_ptr, seg_arg_ptr, seg_second_ptr, num_segments,
    SEGMENT: tl.constexpr,
):  # fmt: skip
    """Grid (rows, segments): max, first argmax and second max of one vocabulary segment."""
    row, seg = tl.program_id(0), tl.program_id(1)
    offs = seg * SEGMENT + tl.arange(0, SEGMENT)
    x = tl.load(
        logits_ptr + row.to(tl.int64) * stride_row + offs, mask=offs < vocab, other=float("-inf")
    )
    seg_max = tl.max(x, axis=0)
    seg_arg = tl.min(tl.where(x == seg_max, offs, 2147483647), axis=0)
    seg_second = tl.max(tl.where(offs == seg_arg, float("-inf"), x), axis=0)
    out = row * num_segments + seg
    tl.store(seg_max_ptr + out, seg_max)
    tl.store(seg_arg_ptr + out, seg_arg)
    tl.store(seg_second_ptr + out, seg_second)


@_jit
def _merge_top2(
    seg_max_ptr, seg_arg_ptr, seg_second_ptr, row, num_segments, SEGMENTS_PAD: tl.constexpr
):
    """Merge a row's segment partials in segment order: (max, first argmax, second max)."""
    seg = tl.arange(0, SEGMENTS_PAD)
    valid = seg < num_segments
    base = row * num_segments
    seg_max = tl.load(seg_max_ptr + base + seg, mask=valid, other=float("-inf"))
    seg_arg = tl.load(seg_arg_ptr + base + seg, mask=valid, other=0)
    seg_second = tl.load(seg_second_ptr + base + seg, mask=valid, other=float("-inf"))
    row_max = tl.max(seg_max, axis=0)
    first = tl.min(tl.where(valid & (seg_max == row_max), seg, SEGMENTS_PAD), axis=0)
    argmax = tl.max(tl.where(seg == first, seg_arg, 0), axis=0)
    # Everything but the argmax element: its segment's second, the other segments' max.
    second = tl.max(tl.where(seg == first, seg_second, seg_max), axis=0)
    return row_max, argmax, second


# -- Triton: selection helpers -----------------------------------------------------------
@_jit
def _ordered(v):
    """fp32 -> int32 in the same order (both zeros -> 0): the float's place in bit order."""
    bits = v.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return tl.where(v == 0.0, 0, ordered)


@_jit
def _from_ordered(ordered):
    """Inverse of `_ordered`."""
    bits = tl.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True)


@_jit
def _before(v):
    """The largest fp32 below finite v (+inf stays +inf: 'nothing above')."""
    return tl.where(v == float("inf"), v, _from_ordered(_ordered(v) - 1))


@_jit
def _threshold_pass(
    row_ptr, temp, m_s, thr, lo, hi, VOCAB: tl.constexpr, BLOCK: tl.constexpr,
    THRESHOLDS: tl.constexpr, STAGES: tl.constexpr, BRACKET: tl.constexpr,
):  # fmt: skip
    """One read of the row: for each threshold t, the count and mass exp(s - m_s) of the
    tokens with scaled s >= t; the total mass; the min and max s inside [lo, hi) (with
    BRACKET; else over the whole row)."""
    # Every per-token tensor is (1, BLOCK), in the layout of the (THRESHOLDS, BLOCK) tiles,
    # so the division and exp are computed once per token.
    offs = tl.arange(0, BLOCK)[None, :]
    thr = thr[:, None]
    counts = tl.zeros([THRESHOLDS, BLOCK], tl.float32)
    masses = tl.zeros([THRESHOLDS, BLOCK], tl.float32)
    total = tl.zeros([1, BLOCK], tl.float32)
    low = tl.full([1, BLOCK], float("inf"), tl.float32)
    high = tl.full([1, BLOCK], float("-inf"), tl.float32)
    for start in tl.range(0, VOCAB, BLOCK, num_stages=STAGES):
        valid = start + offs < VOCAB
        x = tl.load(row_ptr + start + offs, mask=valid, other=float("-inf"))
        s = tl.math.div_rn(x, temp)
        e = tl.exp(s - m_s)  # 0 for the padding (-inf)
        above = (s >= thr).to(tl.float32)
        counts += above
        masses += above * e
        total += e
        inside = valid & (s >= lo) & (s < hi) if BRACKET else valid
        low = tl.minimum(low, tl.where(inside, s, float("inf")))
        high = tl.maximum(high, tl.where(inside, s, float("-inf")))
    return (
        tl.sum(counts, axis=1).to(tl.int32),
        tl.sum(masses, axis=1),
        tl.sum(tl.sum(total, axis=1), axis=0),
        tl.min(tl.min(low, axis=1), axis=0),
        tl.max(tl.max(high, axis=1), axis=0),
    )


@_jit
def _narrow(is_count, k_eff, target, thr, counts, masses, lo, c_lo, m_lo, hi, c_hi, m_hi):
    """Move the bracket [lo, hi) to the thresholds around the cut: by count (top-k: the
    k-th token is in it) or by mass (top-p: the first token with mass before it >= target)."""
    valid_lo = tl.where(is_count, counts >= k_eff, masses >= target)
    new_lo = tl.maximum(tl.max(tl.where(valid_lo, thr, float("-inf")), axis=0), lo)
    pick_lo = valid_lo & (thr == new_lo)
    moved_lo = new_lo > lo
    c_lo = tl.where(moved_lo, tl.max(tl.where(pick_lo, counts, 0), axis=0), c_lo)
    m_lo = tl.where(moved_lo, tl.max(tl.where(pick_lo, masses, 0.0), axis=0), m_lo)
    new_hi = tl.minimum(tl.min(tl.where(valid_lo, float("inf"), thr), axis=0), hi)
    pick_hi = (~valid_lo) & (thr == new_hi)
    moved_hi = new_hi < hi
    c_hi = tl.where(moved_hi, tl.max(tl.where(pick_hi, counts, 0), axis=0), c_hi)
    m_hi = tl.where(moved_hi, tl.max(tl.where(pick_hi, masses, 0.0), axis=0), m_hi)
    return new_lo, c_lo, m_lo, new_hi, c_hi, m_hi


@_jit
def _refined_thresholds(lo_v, hi_v, THRESHOLDS: tl.constexpr):
    """Thresholds in [lo_v, hi_v] for a bracket whose values span [lo_v, hi_v]: evenly
    spaced in value up to hi_v itself, but for the last: the midpoint in float-bit order,
    so that every pass at least halves the bracket's bit range (outliers, huge spans)."""
    j = tl.arange(0, THRESHOLDS)
    by_value = lo_v + (hi_v - lo_v) * ((j + 1).to(tl.float32) / (THRESHOLDS - 1))
    lo_o = _ordered(lo_v).to(tl.int64)
    mid_bits = _from_ordered(((lo_o + _ordered(hi_v).to(tl.int64)) // 2).to(tl.int32))
    thr = tl.where(j < THRESHOLDS - 1, by_value, mid_bits)
    return tl.minimum(tl.maximum(thr, lo_v), hi_v)


@_jit
def _compact(
    row_ptr, temp, lo, hi, slots_ptr, VOCAB: tl.constexpr, CANDIDATES: tl.constexpr,
    BLOCK: tl.constexpr, STAGES: tl.constexpr,
):  # fmt: skip
    """Write the ids of the tokens with lo <= scaled < hi (at most CANDIDATES) to the slots,
    in any order (the block is sorted next); slot CANDIDATES is the fill counter."""
    offs = tl.arange(0, BLOCK)
    counter = slots_ptr + CANDIDATES + offs * 0
    tl.store(slots_ptr + CANDIDATES, 0)
    tl.debug_barrier()
    for start in tl.range(0, VOCAB, BLOCK, num_stages=STAGES):
        valid = start + offs < VOCAB
        x = tl.load(row_ptr + start + offs, mask=valid, other=float("-inf"))
        s = tl.math.div_rn(x, temp)
        inside = valid & (s >= lo) & (s < hi)
        slot = tl.atomic_add(counter, 1, mask=inside, sem="relaxed")
        tl.store(slots_ptr + slot, start + offs, mask=inside & (slot < CANDIDATES))
    tl.debug_barrier()  # the block is read back by other threads of this program


@_jit
def _sort_descending(keys, RANK_SORT: tl.constexpr):
    """Distinct int64 keys in descending order: Triton's bitonic `tl.sort` when compiled;
    in the interpreter (where `tl.sort` runs a Python loop per element) by counting ranks,
    the same result in a few numpy ops."""
    if RANK_SORT:
        rank = tl.sum((keys[None, :] > keys[:, None]).to(tl.int32), axis=1)
        r = tl.arange(0, keys.shape[0])
        return tl.sum(tl.where(rank[None, :] == r[:, None], keys[None, :], 0), axis=1)
    return tl.sort(keys, descending=True)


@_jit
def _sorted_block(
    row_ptr, temp, slots_ptr, count, CANDIDATES: tl.constexpr, RANK_SORT: tl.constexpr
):
    """The compacted tokens in (scaled desc, id asc) order: (scaled, ids, valid)."""
    r = tl.arange(0, CANDIDATES)
    valid = r < count
    ids = tl.load(slots_ptr + r, mask=valid, other=0)
    s = tl.math.div_rn(tl.load(row_ptr + ids, mask=valid, other=0.0), temp)
    key = (_ordered(s).to(tl.int64) << 32) | (0x7FFFFFFF - ids).to(tl.int64)
    key = _sort_descending(tl.where(valid, key, -9223372036854775808), RANK_SORT)
    s = _from_ordered((key >> 32).to(tl.int32))
    ids = 0x7FFFFFFF - (key & 0x7FFFFFFF).to(tl.int32)
    return s, ids, valid


@_jit
def _lex_argmax(perturbed, scaled, ids):
    """The id with the largest perturbed value, then the largest scaled value, then the
    lowest id: the first maximum in (scaled desc, id asc) order, as the reference's."""
    top = tl.max(perturbed, axis=0)
    at_top = perturbed == top
    top_scaled = tl.max(tl.where(at_top, scaled, float("-inf")), axis=0)
    return tl.min(tl.where(at_top & (scaled == top_scaled), ids, 2147483647), axis=0)


@_jit
def _gumbel_pass(
    row_ptr, temp, t_cut, n_ties, key, VOCAB: tl.constexpr, BLOCK: tl.constexpr,
    STAGES: tl.constexpr, SPLIT_TIES: tl.constexpr, LIBDEVICE: tl.constexpr,
):  # fmt: skip
    """Gumbel-max over the kept prefix: {s > t_cut} and the first n_ties ids with s == t_cut
    (SPLIT_TIES), or {s >= t_cut} (not SPLIT_TIES). Returns (token, kept count)."""
    offs = tl.arange(0, BLOCK)
    best_p = tl.full([BLOCK], float("-inf"), tl.float32)
    best_s = tl.full([BLOCK], float("-inf"), tl.float32)
    best_i = tl.full([BLOCK], 2147483647, tl.int32)
    kept = tl.zeros([BLOCK], tl.int32)
    ties_before = 0
    for start in tl.range(0, VOCAB, BLOCK, num_stages=STAGES):
        ids = start + offs
        valid = ids < VOCAB
        s = tl.math.div_rn(tl.load(row_ptr + ids, mask=valid, other=float("-inf")), temp)
        if SPLIT_TIES:
            tie = (valid & (s == t_cut)).to(tl.int32)
            tie_rank = ties_before + tl.cumsum(tie, axis=0) - 1
            keep = valid & ((s > t_cut) | ((tie > 0) & (tie_rank < n_ties)))
            ties_before += tl.sum(tie, axis=0)
        else:
            keep = valid & (s >= t_cut)
        perturbed = tl.where(keep, s + _noise(key, ids, LIBDEVICE), float("-inf"))
        # Per lane ids only grow, so an exact tie keeps the earlier (lower) id.
        better = keep & ((perturbed > best_p) | ((perturbed == best_p) & (s > best_s)))
        best_p = tl.where(better, perturbed, best_p)
        best_s = tl.where(better, s, best_s)
        best_i = tl.where(better, ids, best_i)
        kept += keep.to(tl.int32)
    return _lex_argmax(best_p, best_s, best_i), tl.sum(kept, axis=0)


# -- Triton: the row program -------------------------------------------------------------
@_jit
def _search_above(hi, c_hi, m_hi, m_s, pos_inf):
    """The top-p cut lies above a resolved top-k bracket: search by mass in [hi, +inf)."""
    return hi, c_hi, m_hi, pos_inf, c_hi * 0, m_hi * 0.0, hi, m_s, hi == m_s


@_jit
def _sample_row(
    row_ptr, temp, k_on, k_eff, top_p, key, row_max, slots_ptr,
    VOCAB: tl.constexpr, BLOCK: tl.constexpr, THRESHOLDS: tl.constexpr,
    CANDIDATES: tl.constexpr, STAGES: tl.constexpr, MAX_ROUNDS: tl.constexpr,
    EPS_CUT: tl.constexpr, LIBDEVICE: tl.constexpr, RANK_SORT: tl.constexpr,
):  # fmt: skip
    """Sample one row (temperature > 0). Returns (token, number of kept tokens)."""
    temp = tl.maximum(temp, 1e-5)
    m_s = tl.math.div_rn(row_max, temp)
    only_top = ~(top_p > 0.0)  # top_p NaN or <= 0 keeps the top token alone: top-k 1
    k_on = k_on | only_top
    k_eff = tl.where(only_top, 1, k_eff)
    p = tl.where(only_top, 1.0, top_p)
    neg_inf = tl.full((), float("-inf"), tl.float32)
    pos_inf = tl.full((), float("inf"), tl.float32)
    vocab = tl.full((), VOCAB, tl.int32)
    r = tl.arange(0, CANDIDATES)

    done = (~k_on) & (p >= 1.0)  # keep everything: only the Gumbel pass is needed
    # Pass 1: thresholds 0.5, 1, 2, ... below the max (in logits; in scaled units if T > 1).
    scale = 0.5 / tl.minimum(temp, 1.0)
    thr = m_s - scale * tl.exp2(tl.arange(0, THRESHOLDS).to(tl.float32))
    counts = tl.zeros([THRESHOLDS], tl.int32)
    masses = tl.zeros([THRESHOLDS], tl.float32)
    z_norm = m_s * 0.0 + 1.0
    s_min = m_s
    if ~done:
        counts, masses, z_norm, s_min, _ = _threshold_pass(
            row_ptr, temp, m_s, thr, neg_inf, pos_inf, VOCAB, BLOCK, THRESHOLDS, STAGES, False
        )
    is_count = k_on  # resolve the top-k cut first (by count), then top-p (by mass)
    target = p * z_norm
    lo, c_lo, m_lo, hi, c_hi, m_hi = _narrow(
        is_count, k_eff, target, thr, counts, masses, neg_inf, vocab, z_norm, pos_inf, 0 * vocab,
        0.0 * z_norm,
    )  # fmt: skip
    lo_v = tl.maximum(lo, s_min)  # the values inside the bracket lie in [lo_v, hi_v]
    hi_v = tl.minimum(_before(hi), m_s)
    single = s_min == m_s  # the bracket holds one distinct value
    use_pass = done
    t_cut = neg_inf
    n_ties = vocab
    token = 0 * vocab
    kept = 0 * vocab
    rounds = 0 * vocab
    while (~done) & (rounds < MAX_ROUNDS):
        if c_lo <= CANDIDATES:  # everything from lo up fits: take it all
            hi, c_hi, m_hi = pos_inf, 0 * c_hi, 0.0 * m_hi
        n_in = c_lo - c_hi
        if n_in <= CANDIDATES:
            _compact(row_ptr, temp, lo, hi, slots_ptr, VOCAB, CANDIDATES, BLOCK, STAGES)
            s, ids, valid = _sorted_block(row_ptr, temp, slots_ptr, n_in, CANDIDATES, RANK_SORT)
            e = tl.where(valid, tl.exp(s - m_s), 0.0)
            in_k = c_hi + r < k_eff
            z_norm = tl.where(is_count, m_hi + tl.sum(tl.where(in_k, e, 0.0), axis=0), z_norm)
            target = p * z_norm
            prob = e / z_norm
            before = m_hi / z_norm + tl.cumsum(prob, axis=0) - prob
            keep = valid & in_k & (before < p)
            n_keep = tl.minimum(tl.min(tl.where(valid & ~keep, r, CANDIDATES), axis=0), n_in)
            if is_count & (n_keep == 0) & (c_hi > 0):
                lo, c_lo, m_lo, hi, c_hi, m_hi, lo_v, hi_v, single = _search_above(
                    hi, c_hi, m_hi, m_s, pos_inf
                )
                is_count = is_count & False
            else:
                n_keep = tl.where(c_hi + n_keep == 0, 1, n_keep)
                done = done | True
                if c_hi == 0:  # every kept token is in the block: Gumbel-max here
                    noise = _noise(key, ids, LIBDEVICE)
                    perturbed = tl.where(valid & (r < n_keep), s + noise, float("-inf"))
                    best = tl.argmax(perturbed, axis=0)  # first in sorted order on ties
                    token = tl.max(tl.where(r == best, ids, 0), axis=0)
                    kept = n_keep
                else:  # the cut is the last kept value; the block holds all its ties
                    last = tl.max(tl.where(r == n_keep - 1, s, float("-inf")), axis=0)
                    ties = valid & (s == last)
                    kept_ties = tl.sum((ties & (r < n_keep)).to(tl.int32), axis=0)
                    all_ties = kept_ties == tl.sum(ties.to(tl.int32), axis=0)
                    t_cut = tl.where(n_keep > 0, last, hi)
                    n_ties = tl.where((n_keep > 0) & ~all_ties, kept_ties, vocab)
                    use_pass = use_pass | True
        elif single:  # > CANDIDATES exact ties: count them off by id
            e_tie = tl.exp(hi_v - m_s)
            n_k = tl.minimum(k_eff - c_hi, n_in)
            z_norm = tl.where(is_count, m_hi + n_k.to(tl.float32) * e_tie, z_norm)
            target = p * z_norm
            if is_count & (m_hi >= target) & (c_hi > 0):
                lo, c_lo, m_lo, hi, c_hi, m_hi, lo_v, hi_v, single = _search_above(
                    hi, c_hi, m_hi, m_s, pos_inf
                )
                is_count = is_count & False
            else:
                room = tl.minimum(tl.maximum((target - m_hi) / e_tie, 0.0), n_k.to(tl.float32))
                n_p = tl.where(e_tie > 0.0, tl.math.ceil(room).to(tl.int32), n_k)
                n_p = tl.where((e_tie == 0.0) & (m_hi >= target), 0, n_p)
                n_keep = tl.minimum(n_k, n_p)
                n_keep = tl.where(c_hi + n_keep == 0, 1, n_keep)
                t_cut = hi_v
                n_ties = tl.where(n_keep < n_in, n_keep, vocab)
                use_pass = use_pass | True
                done = done | True
        elif (~is_count) & (c_hi > 0) & (m_lo - m_hi <= EPS_CUT * z_norm):
            t_cut = hi  # a light top-p bracket of many tokens: within tolerance, cut on top
            n_ties = vocab
            use_pass = use_pass | True
            done = done | True
        else:  # refine the bracket
            thr = _refined_thresholds(lo_v, hi_v, THRESHOLDS)
            counts, masses, _, low, high = _threshold_pass(
                row_ptr, temp, m_s, thr, lo, hi, VOCAB, BLOCK, THRESHOLDS, STAGES, True
            )
            single = low == high
            lo, c_lo, m_lo, hi, c_hi, m_hi = _narrow(
                is_count, k_eff, target, thr, counts, masses, lo, c_lo, m_lo, hi, c_hi, m_hi
            )
            lo_v = tl.maximum(lo, low)
            hi_v = tl.minimum(_before(hi), high)
        rounds += 1
    if use_pass | ~done:
        # (Not done after MAX_ROUNDS is unreachable: each refinement at least halves the
        # bracket in float-bit order. Should it happen, cut at the bracket's top.)
        t_cut = tl.where(done, t_cut, tl.where(c_hi > 0, hi, m_s))
        n_ties = tl.where(done, n_ties, tl.where(c_hi > 0, vocab, 1))
        if n_ties < VOCAB:  # the cut splits a group of ties: count them off by id
            token, kept = _gumbel_pass(
                row_ptr, temp, t_cut, n_ties, key, VOCAB, BLOCK, STAGES, True, LIBDEVICE
            )
        else:
            token, kept = _gumbel_pass(
                row_ptr, temp, t_cut, n_ties, key, VOCAB, BLOCK, STAGES, False, LIBDEVICE
            )
    return token, kept


@_jit
def _sample_kernel(
    logits_ptr, stride_row,
    temp_ptr, temp_stride, top_k_ptr, top_k_stride, top_p_ptr, top_p_stride,
    seed_ptr, seed_stride, position_ptr, position_stride,
    seg_max_ptr, seg_arg_ptr, seg_second_ptr, num_segments, slots_ptr,
    tokens_ptr, tokens_stride, margins_ptr, margins_stride, kept_ptr,
    VOCAB: tl.constexpr, SEGMENTS_PAD: tl.constexpr, BLOCK: tl.constexpr,
    THRESHOLDS: tl.constexpr, CANDIDATES: tl.constexpr, STAGES: tl.constexpr,
    MAX_ROUNDS: tl.constexpr, EPS_CUT: tl.constexpr, LIBDEVICE: tl.constexpr,
    RANK_SORT: tl.constexpr,
):  # fmt: skip
    """Grid (rows,): margin and token of one row (greedy, or sampled by `_sample_row`)."""
    row = tl.program_id(0)
    row_max, argmax, second = _merge_top2(
        seg_max_ptr, seg_arg_ptr, seg_second_ptr, row, num_segments, SEGMENTS_PAD
    )
    tl.store(margins_ptr + row * margins_stride, row_max - second)
    temp = tl.load(temp_ptr + row * temp_stride).to(tl.float32)
    token = argmax
    kept = argmax * 0 + 1
    if temp > 0.0:
        top_k = tl.load(top_k_ptr + row * top_k_stride).to(tl.int64)
        k_on = (top_k > 0) & (top_k < VOCAB)
        k_eff = tl.where(k_on, top_k, VOCAB).to(tl.int32)
        top_p = tl.load(top_p_ptr + row * top_p_stride).to(tl.float32)
        seed = tl.load(seed_ptr + row * seed_stride).to(tl.int64)
        position = tl.load(position_ptr + row * position_stride).to(tl.int64)
        token, kept = _sample_row(
            logits_ptr + row.to(tl.int64) * stride_row, temp, k_on, k_eff, top_p,
            _noise_key(seed, position), row_max, slots_ptr + row * (CANDIDATES + 1),
            VOCAB, BLOCK, THRESHOLDS, CANDIDATES, STAGES, MAX_ROUNDS, EPS_CUT, LIBDEVICE,
            RANK_SORT,
        )  # fmt: skip
    tl.store(tokens_ptr + row * tokens_stride, token.to(tl.int64))
    tl.store(kept_ptr + row, kept)


# -- launch ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Static launch configuration (from shapes only: batch invariant, graph capturable)."""

    segment: int = 4096  # vocabulary per top-2 program
    segment_warps: int = 4
    block: int = 1024  # vocabulary per loop step of a row program
    thresholds: int = 8  # per threshold pass (a power of two >= 2)
    candidates: int = 1024  # tokens sorted in registers (power of two)
    num_warps: int = 8
    stages: int = 3  # loads in flight per row loop (cp.async pipelining)
    max_rounds: int = 48
    rank_sort: bool | None = None  # sort the block by counting ranks (default: interpreted)


DEFAULT_CONFIG = SamplingConfig()


def _compiled(device: torch.device) -> bool:
    """Whether kernels on `device` are compiled (CUDA) rather than interpreted."""
    return device.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1"


def _launch_options(device: torch.device) -> dict:
    """Compile options: torch's CUDA `logf` does not flush denormals; neither do we."""
    return {"enable_reflect_ftz": False} if _compiled(device) else {}


def sample_triton(
    logits: torch.Tensor,
    params: SamplingTensors,
    *,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
    kept: torch.Tensor | None = None,
    config: SamplingConfig = DEFAULT_CONFIG,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of fp32 logits (N, V); same contract as `sample_torch`.

    `out` = (tokens int64 (N,), margins fp32 (N,)) is written if given; `kept` (N,) int32,
    if given, receives each row's kept-set size (1 for greedy rows). No host sync.
    """
    rows, vocab = logits.shape
    if logits.dtype != torch.float32 or vocab < 2:
        raise ValueError(
            f"logits must be fp32 (N, V >= 2), got {logits.dtype} {tuple(logits.shape)}"
        )
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    tokens, margins = out if out is not None else _empty_outputs(rows, logits.device)
    segments = triton.cdiv(vocab, config.segment)
    slots_per_row = config.candidates + 1  # the compacted ids and their fill counter
    workspace = _workspace(rows * (3 * segments + slots_per_row + 1), logits.device)
    seg_max, seg_arg, seg_second, slots, own_kept = workspace.split(
        [rows * segments] * 3 + [rows * slots_per_row, rows]
    )
    kept = own_kept if kept is None else kept
    if rows == 0:
        return tokens, margins
    compiled = _compiled(logits.device)
    _top2_partials_kernel[(rows, segments)](
        logits, logits.stride(0), vocab, seg_max.view(torch.float32), seg_arg,
        seg_second.view(torch.float32), segments,
        SEGMENT=config.segment, num_warps=config.segment_warps,
    )  # fmt: skip
    _sample_kernel[(rows,)](
        logits, logits.stride(0),
        params.temperature, params.temperature.stride(0), params.top_k, params.top_k.stride(0),
        params.top_p, params.top_p.stride(0), params.seed, params.seed.stride(0),
        params.position, params.position.stride(0),
        seg_max.view(torch.float32), seg_arg, seg_second.view(torch.float32), segments, slots,
        tokens, tokens.stride(0), margins, margins.stride(0), kept,
        VOCAB=vocab, SEGMENTS_PAD=triton.next_power_of_2(segments), BLOCK=config.block,
        THRESHOLDS=config.thresholds, CANDIDATES=config.candidates, STAGES=config.stages,
        MAX_ROUNDS=config.max_rounds, EPS_CUT=EPS_CUT, LIBDEVICE=compiled,
        RANK_SORT=not compiled if config.rank_sort is None else config.rank_sort,
        num_warps=config.num_warps, **_launch_options(logits.device),
    )  # fmt: skip
    return tokens, margins


def _workspace(words: int, device: torch.device) -> torch.Tensor:
    """Uninitialised int32 scratch of one call (a hook: the tests poison it)."""
    return torch.empty(words, dtype=torch.int32, device=device)


def _empty_outputs(rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.empty(rows, dtype=torch.int64, device=device),
        torch.empty(rows, dtype=torch.float32, device=device),
    )


def triton_noise(
    seed: torch.Tensor, position: torch.Tensor, token_ids: torch.Tensor
) -> torch.Tensor:
    """The kernel's in-kernel noise for ids (N, V), to test against `gumbel_noise`."""
    rows, vocab = token_ids.shape
    ids = token_ids.to(torch.int32).contiguous()
    out = torch.empty(rows, vocab, dtype=torch.float32, device=ids.device)
    _noise_kernel[(rows,)](
        seed.contiguous(), position.contiguous(), ids, out,
        VOCAB=vocab, BLOCK=1024, LIBDEVICE=_compiled(ids.device),
        **_launch_options(ids.device),
    )  # fmt: skip
    return out


def triton_noise_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """The kernel's bits -> Gumbel step on int64 `bits` holding uint32 values."""
    flat = bits.reshape(-1).to(torch.int64).contiguous()
    out = torch.empty(flat.shape, dtype=torch.float32, device=flat.device)
    block = 1024
    _bits_noise_kernel[(triton.cdiv(max(flat.numel(), 1), block),)](
        flat, out, flat.numel(),
        BLOCK=block, LIBDEVICE=_compiled(flat.device),
        **_launch_options(flat.device),
    )  # fmt: skip
    return out.reshape(bits.shape)


def sample_with(
    logits: torch.Tensor, params: SamplingTensors, backend: KernelBackend
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch: the torch reference or the Triton kernel."""
    if backend is KernelBackend.TORCH:
        return sample_torch(logits, params)
    if not triton_usable(logits.device.type):
        raise RuntimeError(f"Triton kernels cannot run on {logits.device.type} here")
    return sample_triton(logits, params)


# -- benchmark ---------------------------------------------------------------------------
BENCH_SHAPES = ((64, 103424), (4, 151552), (16, 151552))  # (rows, vocab): ERNIE, GLM
BENCH_CASES = (  # name, temperature, top_k, top_p
    ("greedy", 0.0, 0, 1.0),
    ("top-k 50, top-p 0.95", 1.0, 50, 0.95),
    ("top-p 0.9", 1.0, 0, 0.9),
    ("temperature 1", 1.0, 0, 1.0),
)


BENCH_LOGITS = {  # name: (lift range of 8 head tokens over a N(0, 2) bulk) or None: N(0, 1)
    "peaked": (12.0, 18.0),  # a confident LM position: top-p 0.9 keeps 1-5 tokens
    "heavy": (4.0, 10.0),  # a heavy tail: top-p 0.9 keeps ~10-25k of 103k tokens
    "flat": None,  # N(0, 1): top-p 0.9 keeps ~70% of the vocabulary (the slow path)
}


def bench_logits(rows: int, vocab: int, kind: str, seed: int = 0) -> torch.Tensor:
    """bf16-rounded logits on CUDA of a `BENCH_LOGITS` kind."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    logits = torch.randn(rows, vocab, device="cuda", generator=generator)
    lift = BENCH_LOGITS[kind]
    if lift is not None:
        logits *= 2.0
        hot = torch.randint(vocab, (rows, 8), device="cuda", generator=generator)
        low, high = lift
        lifts = low + (high - low) * torch.rand(rows, 8, device="cuda", generator=generator)
        logits.scatter_add_(1, hot, lifts)
    return logits.bfloat16().float()


def bench_params(rows: int, temperature: float, top_k: int, top_p: float) -> SamplingTensors:
    """The same sampling parameters on every row; distinct seeds."""

    def full(value, dtype):
        return torch.full((rows,), value, dtype=dtype, device="cuda")

    return SamplingTensors(
        temperature=full(temperature, torch.float32),
        top_k=full(top_k, torch.int64),
        top_p=full(top_p, torch.float32),
        seed=torch.arange(rows, device="cuda") * 7919 + 1,
        position=full(2250, torch.int64),
    )


def _graph_us(fn) -> float:
    """Median µs of one CUDA-graph replay of `fn` (L2 flushed between runs by do_bench)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # compile / warm up outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return triton.testing.do_bench(graph.replay, warmup=10, rep=50, return_mode="median") * 1e3


def _bench_row(rows: int, vocab: int, case: tuple, kind: str) -> str:
    """One table row: kernel and reference time, the mean kept-set size, and the share of
    tokens equal to the reference's."""
    name, temperature, top_k, top_p = case
    logits = bench_logits(rows, vocab, kind)
    params = bench_params(rows, temperature, top_k, top_p)
    out = _empty_outputs(rows, logits.device)
    kept = torch.empty(rows, dtype=torch.int32, device=logits.device)
    kernel_us = _graph_us(lambda: sample_triton(logits, params, out=out, kept=kept))
    torch_us = _graph_us(lambda: sample_torch(logits, params))
    reference = sample_torch(logits, params)
    same = (out[0] == reference[0]).float().mean().item()
    return (
        f"{rows:>4} x {vocab:<7} {name:<22} {kind:<7} {kernel_us:9.1f} {torch_us:9.1f}"
        f" {torch_us / kernel_us:7.1f}x {kept.float().mean().item():10.1f} {same:8.0%}"
    )


def bench() -> None:
    """Print kernel vs reference times at the engine's shapes (CUDA only)."""
    if not torch.cuda.is_available() or triton is None:
        sys.exit("the benchmark needs CUDA and Triton")
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"CUDA {torch.version.cuda}; median of CUDA-graph replays, L2 flushed; {DEFAULT_CONFIG}")
    print(
        f"{'rows x vocab':<14} {'case':<22} {'logits':<7} {'triton µs':>9} {'torch µs':>9}"
        f" {'speedup':>8} {'mean kept':>10} {'=torch':>8}"
    )
    for rows, vocab in BENCH_SHAPES:
        for case in BENCH_CASES:
            for kind in BENCH_LOGITS if case[1] > 0 else ("peaked",):
                print(_bench_row(rows, vocab, case, kind), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Command line: `--bench` times the kernel against the torch reference on CUDA."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="time the kernel on CUDA")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return
    with torch.inference_mode():
        bench()


if __name__ == "__main__":
    main()
