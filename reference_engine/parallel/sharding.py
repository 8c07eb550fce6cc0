"""Which slice of each parameter a rank holds, and filling a sharded model with the
weights of TP 1.

Every parameter of the decoder is either replicated (norms, routers, correction biases) or
split along one dimension in sections: q/k/v by heads (three sections: a rank takes its
heads of each), gate/up by intermediate (two sections), o/down by their input, embedding
and LM head by vocabulary rows. A name no rule knows is an error, so that a new parameter
cannot silently be replicated where it should be split.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from reference_engine.config import ConfigError, ModelConfig
from reference_engine.parallel.group import TensorParallel

Init = Callable[[str, torch.Tensor, ModelConfig, torch.Generator], None]


@dataclass(frozen=True)
class Shard:
    """Split `dim` of the full tensor into `sections` (full sizes) and keep each section's
    rank-th 1/N part, concatenated in order."""

    dim: int
    sections: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.dim < 0 or not self.sections or min(self.sections) <= 0:
            raise ConfigError(f"bad shard {self}")

    def full_shape(self, local: torch.Size, size: int) -> tuple[int, ...]:
        shape = list(local)
        shape[self.dim] = sum(self.sections)
        if shape[self.dim] != local[self.dim] * size:
            raise ConfigError(f"shard {self} does not match a local shape {tuple(local)}")
        return tuple(shape)

    def take(self, full: torch.Tensor, tp: TensorParallel) -> torch.Tensor:
        pieces = full.split(self.sections, dim=self.dim)
        return torch.cat([p.chunk(tp.size, dim=self.dim)[tp.rank] for p in pieces], self.dim)


def _rules(config: ModelConfig) -> list[tuple[str, Shard | None]]:
    """(name pattern, shard) in match order; None: replicated."""
    c = config
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    dense, expert = c.dense_intermediate_size, c.moe_intermediate_size
    shared = expert * c.num_shared_experts
    return [
        (r"(embed|lm_head)\.weight", Shard(0, (c.vocab_size,))),
        (r"(.*norm)\.weight|.*\.ffn\.(router|correction_bias)", None),
        (r".*\.attn\.qkv\.(weight|bias)", Shard(0, (q, kv, kv))),
        (r".*\.attn\.o\.weight", Shard(1, (q,))),
        (r".*\.ffn\.shared\.gate_up\.weight", Shard(0, (shared, shared))),
        (r".*\.ffn\.shared\.down\.weight", Shard(1, (shared,))),
        (r".*\.ffn\.gate_up\.weight", Shard(0, (dense, dense))),
        (r".*\.ffn\.down\.weight", Shard(1, (dense,))),
        (r".*\.ffn\.gate_up", Shard(2, (expert, expert))),
        (r".*\.ffn\.down", Shard(1, (expert,))),
    ]


def shard_of(name: str, config: ModelConfig) -> Shard | None:
    """The shard rule of parameter `name` (None: replicated); unknown names raise."""
    for pattern, shard in _rules(config):
        if re.fullmatch(pattern, name):
            return shard
    raise ConfigError(f"no tensor-parallel rule for parameter {name!r}")


def fill_shards(
    model: nn.Module,
    config: ModelConfig,
    generator: torch.Generator,
    tp: TensorParallel,
    init: Init,
) -> None:
    """For every parameter, in the TP-1 model's order, draw the full tensor from the
    generator exactly as TP 1 does (`init`) and keep this rank's slice."""
    for name, param in model.named_parameters():
        shard = shard_of(name, config)
        if shard is None:
            init(name, param, config, generator)
            continue
        shape = shard.full_shape(param.shape, tp.size)
        full = torch.empty(shape, dtype=param.dtype, device=param.device)
        init(name, full, config, generator)
        param.copy_(shard.take(full, tp))
        del full
