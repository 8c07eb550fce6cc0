"""Grouped-query attention over the static per-slot KV cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_engine.config import ModelConfig
from reference_engine.kernels import KernelBackend
from reference_engine.kernels.decode_attention import decode_attention
from reference_engine.kv_cache import KVCache
from reference_engine.layers import Rotary
from reference_engine.parallel.group import SINGLE, TensorParallel


class Attention(nn.Module):
    """Under tensor parallelism a rank's share of the heads (q/k/v column-parallel) and
    o row-parallel: its output is a partial sum the decoder layer all-reduces."""

    def __init__(
        self, config: ModelConfig, layer: int, rotary: Rotary, tp: TensorParallel = SINGLE
    ) -> None:
        super().__init__()
        self.layer = layer
        self.num_heads = tp.split(config.num_heads)
        self.num_kv_heads = tp.split(config.num_kv_heads)
        self.head_dim = config.head_dim
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.split = (q_size, kv_size, kv_size)
        self.qkv = nn.Linear(config.hidden_size, sum(self.split), bias=config.qkv_bias)
        self.o = nn.Linear(q_size, config.hidden_size, bias=False)
        self.rotary = rotary
        self.backend = KernelBackend.TORCH  # decode attention's implementation

    def _project(self, x: torch.Tensor, positions: torch.Tensor):
        q, k, v = self.qkv(x).split(self.split, dim=-1)
        q = self.rotary(q.view(-1, self.num_heads, self.head_dim), positions)  # (N, Hq, D)
        k = self.rotary(k.view(-1, self.num_kv_heads, self.head_dim), positions)  # (N, Hkv, D)
        return q, k, v.view(-1, self.num_kv_heads, self.head_dim)

    def decode(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        rows: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One new token per slot. x: (S, H); positions, rows: (S,); row i is slot i.

        Slot s attends to cache positions [0, positions[s]] of its own row; idle slots (at
        the scratch position max_len - 1) attend to position 0 only, and their rows are
        discarded. Shapes are static and each slot's result depends on its own row only
        (batch invariance), in both backends. `lengths`: `valid_lengths(positions, cache)`,
        which the model computes once for all layers.
        """
        q, k, v = self._project(x, positions)
        cache.write(self.layer, rows, k, v)
        keys, values = cache.layer(self.layer)  # (S, L, Hkv, D)
        if lengths is None:
            lengths = valid_lengths(positions, cache)
        scale = self.head_dim**-0.5
        out = decode_attention(q, keys, values, lengths, scale, self.backend)  # (S, Hq, D)
        return self.o(out.reshape(x.shape[0], -1))

    def prefill(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        rows: torch.Tensor,
        slot: int,
        start: int,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One prompt chunk of one request: positions [start, start + T) of `slot`, attending
        to the whole prompt so far. x: (T, H); rows: (T,). A chunk from position 0 attends
        to itself alone, causally, exactly as an unchunked prompt does. `mask`:
        `chunk_mask(positions, start)`, which the model computes once for all layers."""
        q, k, v = self._project(x, positions)
        cache.write(self.layer, rows, k, v)
        group = self.num_heads // self.num_kv_heads
        if start:  # earlier chunks' keys and values come from the cache
            keys, values = cache.layer(self.layer)
            k, v = keys[slot, : start + x.shape[0]], values[slot, : start + x.shape[0]]
            if mask is None:
                mask = chunk_mask(positions, start)
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1),
            k.transpose(0, 1),
            v.transpose(0, 1),
            attn_mask=mask,
            is_causal=mask is None,
        )  # (Hq, T, D)
        return self.o(out.transpose(0, 1).reshape(x.shape[0], -1))


def valid_lengths(positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """(S,) cache positions each slot attends to in a decode step: [0, position]; an idle
    slot (at the scratch position max_len - 1) attends to position 0 only."""
    idle = positions == cache.max_len - 1
    return torch.where(idle, 1, positions + 1)


def chunk_mask(positions: torch.Tensor, start: int) -> torch.Tensor | None:
    """(T, start + T) causal mask of a prompt chunk over the prompt so far; None for a
    chunk from position 0 (attention is then plain causal)."""
    if not start:
        return None
    key_positions = torch.arange(start + positions.shape[0], device=positions.device)
    return key_positions[None, :] <= positions[:, None]
