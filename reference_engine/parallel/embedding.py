"""Vocab-parallel embedding: each rank holds V/N rows; a masked lookup, then an all-reduce."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_engine.parallel.group import TensorParallel


class VocabParallelEmbedding(nn.Module):
    """Rows [rank * V/N, (rank + 1) * V/N) of the embedding (`weight`, as nn.Embedding
    names it, so the tied LM head reads the same shard). Ids outside the shard look up
    zeros; the all-reduce adds one rank's row to zeros, so the result is exactly TP 1's."""

    def __init__(self, vocab_size: int, hidden_size: int, tp: TensorParallel) -> None:
        super().__init__()
        self.tp = tp
        self.rows = tp.split(vocab_size)
        self.first = tp.rank * self.rows
        self.weight = nn.Parameter(torch.empty(self.rows, hidden_size))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.first
        outside = (local < 0) | (local >= self.rows)
        x = F.embedding(local.clamp(0, self.rows - 1), self.weight)
        return self.tp.all_reduce(x.masked_fill(outside[:, None], 0.0))
