"""The decoder: embeddings, attention + (dense | MoE) layers, LM head; random seeded weights."""

from __future__ import annotations

import functools

import torch
from torch import nn

from reference_engine.attention import Attention, chunk_mask, valid_lengths
from reference_engine.config import ModelConfig
from reference_engine.kernels import KernelBackend
from reference_engine.kv_cache import KVCache
from reference_engine.layers import DenseMLP, RMSNorm, Rotary
from reference_engine.moe import MoE
from reference_engine.parallel.embedding import VocabParallelEmbedding
from reference_engine.parallel.group import SINGLE, TensorParallel


class DecoderLayer(nn.Module):
    """Attention and FFN, each a rank's partial sum under tensor parallelism: one
    all-reduce each (no-ops at TP 1)."""

    def __init__(
        self, config: ModelConfig, layer: int, rotary: Rotary, tp: TensorParallel = SINGLE
    ) -> None:
        super().__init__()
        self.tp = tp
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config, layer, rotary, tp)
        self.post_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        dense = layer < config.first_moe_layer
        self.ffn = (
            DenseMLP(config.hidden_size, tp.split(config.dense_intermediate_size))
            if dense
            else MoE(config, tp)
        )

    def forward(self, x, positions, cache: KVCache, rows, attend) -> torch.Tensor:
        attended = attend(self.attn, self.input_norm(x), positions, cache, rows)
        x = x + self.tp.all_reduce(attended)
        return x + self.tp.all_reduce(self.ffn(self.post_norm(x)))


class MoEDecoder(nn.Module):
    """A GLM-4.5 / ERNIE-4.5-shaped decoder with random weights drawn from `seed`.

    With `tp` of size N it holds one rank's shard (see `reference_engine.parallel`): the
    same parameters by name and order, with heads, intermediates and vocabulary split."""

    def __init__(self, config: ModelConfig, max_len: int, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        self.config, self.tp = config, tp
        self.rotary = rotary = Rotary(config.rotary_dim, config.rope_theta, max_len)
        self.embed = (
            nn.Embedding(config.vocab_size, config.hidden_size)
            if tp.size == 1
            else VocabParallelEmbedding(config.vocab_size, config.hidden_size, tp)
        )
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, rotary, tp) for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = None
        if not config.tie_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, tp.split(config.vocab_size), bias=False)

    @classmethod
    def build(
        cls,
        config: ModelConfig,
        max_len: int,
        device: torch.device,
        dtype: torch.dtype,
        seed: int,
        tp: TensorParallel = SINGLE,
    ) -> MoEDecoder:
        """Allocate directly on `device` (no CPU staging for 40 GB models) and fill weights.
        Under tensor parallelism every rank draws each full parameter in turn, as TP 1
        does, and keeps its slice: one parameter at a time, never the whole model."""
        with torch.device("meta"):
            model = cls(config, max_len, tp).to(dtype)  # cast while empty: no fp32 copy
        model.rotary.float()  # rotary tables stay fp32
        model = model.to_empty(device=device)
        model.rotary.fill_tables()
        generator = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            if tp.size == 1:
                for name, param in model.named_parameters():
                    init_parameter(name, param, config, generator)
            else:
                from reference_engine.parallel.sharding import fill_shards

                fill_shards(model, config, generator, tp, init_parameter)
        return model.eval().requires_grad_(False)

    def use_kernels(self, backend: KernelBackend) -> None:
        """Run the hot-path ops through `backend` (the torch references or the kernels)."""
        for module in self.modules():
            if isinstance(module, (Attention, MoE, RMSNorm, Rotary)):
                module.backend = backend

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm + LM head, in fp32 for sampling. hidden: (N, H) -> (N, V). Under
        tensor parallelism each rank computes its V/N columns; the all-gather gives every
        rank all of them."""
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return self.tp.all_gather(self.norm(hidden) @ weight.t()).float()

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One token per slot. tokens, positions: (S,) with row i = slot i -> logits (S, V)."""
        slots = torch.arange(tokens.shape[0], device=tokens.device)
        rows = slots * cache.max_len + positions  # (S,)
        attend = functools.partial(Attention.decode, lengths=valid_lengths(positions, cache))
        x = self.embed(tokens)  # (S, H)
        for layer in self.layers:
            x = layer(x, positions, cache, rows, attend)
        return self.logits(x)

    def prefill(
        self, tokens: torch.Tensor, slot: int, start: int, cache: KVCache, logits: bool = True
    ) -> torch.Tensor | None:
        """A prompt chunk (T,) into `slot` from position `start` -> logits of its last
        position (1, V); with `logits` off (a chunk before the prompt's last) only the
        cache is filled, and the LM head is not run."""
        positions = torch.arange(start, start + tokens.shape[0], device=tokens.device)
        rows = slot * cache.max_len + positions  # (T,)
        mask = chunk_mask(positions, start)
        attend = functools.partial(Attention.prefill, slot=slot, start=start, mask=mask)
        x = self.embed(tokens)  # (T, H)
        for layer in self.layers:
            x = layer(x, positions, cache, rows, attend)
        return self.logits(x[-1:]) if logits else None


def init_parameter(
    name: str, param: torch.Tensor, config: ModelConfig, generator: torch.Generator
) -> None:
    """Fill one parameter (by its name in the model) from the seeded generator."""
    if name.endswith("norm.weight"):
        param.fill_(1.0)
    elif name.endswith("correction_bias"):
        param.normal_(0.0, _bias_std(config), generator=generator)
    else:
        param.normal_(0.0, 0.02, generator=generator)


def _bias_std(config: ModelConfig) -> float:
    """The routers' selection bias, small beside the spread of the scores, so that random
    tokens spread over the experts as a trained, load-balanced router spreads them. A std
    of 0.1 against ERNIE's softmax scores of ~1/64 chose experts by bias alone (one expert
    took all 64 tokens of a step); against GLM's sigmoid scores (spread ~0.3) it still
    halved the experts hit at 64 tokens."""
    return 0.01 if config.router == "sigmoid" else 0.1 / config.num_experts
