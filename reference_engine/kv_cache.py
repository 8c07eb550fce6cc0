"""Static per-slot KV cache: one fixed-size row of positions per batch slot."""

from __future__ import annotations

import torch

from reference_engine.config import ModelConfig


class KVCache:
    """Keys and values of every layer for `num_slots` sequences of up to `max_len` tokens.

    Shapes never change, so decode reads and writes it inside a CUDA graph. Writes go
    through flat row indices (slot * max_len + position) with `index_copy_`, which needs no
    host sync.
    """

    def __init__(
        self,
        config: ModelConfig,
        num_slots: int,
        max_len: int,
        device: torch.device,
        dtype: torch.dtype,
        tp_size: int = 1,
    ) -> None:
        """`tp_size` ranks: this rank's cache holds num_kv_heads / tp_size heads."""
        self.num_slots = num_slots
        self.max_len = max_len
        kv_heads = config.num_kv_heads // tp_size
        shape = (config.num_layers, 2, num_slots, max_len, kv_heads, config.head_dim)
        self.data = torch.zeros(shape, device=device, dtype=dtype)

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of one layer: (slots, max_len, kv_heads, head_dim) each."""
        return self.data[layer, 0], self.data[layer, 1]

    def write(self, layer: int, rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v (N, kv_heads, head_dim) at flat rows (N,) = slot * max_len + position."""
        keys, values = self.layer(layer)
        keys.view(-1, *keys.shape[2:]).index_copy_(0, rows, k)
        values.view(-1, *values.shape[2:]).index_copy_(0, rows, v)
