"""Sampling on the device without host sync: greedy, temperature, top-k, top-p.

Randomness is Gumbel-max noise drawn from a counter-based hash of (seed, position, token
id), not from a stateful generator: a request samples the same token at the same position
whatever it is batched with, whichever schedule runs it, on whichever rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # < 2**31, so int64 products of 32-bit values never overflow


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MUL) & _MASK32
    x = x ^ (x >> 16)
    x = (x * _MUL) & _MASK32
    return x ^ (x >> 16)


def gumbel_noise(seed: torch.Tensor, position: torch.Tensor, token_ids: torch.Tensor):
    """Gumbel(0, 1) noise (N, V) as a pure function of seed (N,), position (N,), ids (N, V)."""
    folded_seed = (seed ^ (seed >> 32)) & _MASK32
    key = _mix32(_mix32(folded_seed) ^ (position & _MASK32))  # (N,)
    bits = _mix32(key[:, None] ^ token_ids)  # (N, V)
    uniform = ((bits >> 8).float() + 0.5) * (1.0 / 2**24)  # in (0, 1)
    return -torch.log(-torch.log(uniform))


@dataclass
class SamplingTensors:
    """Per-row sampling parameters, all (N,): the position is the sampled token's."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    seed: torch.Tensor
    position: torch.Tensor


def sample(logits: torch.Tensor, params: SamplingTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of fp32 logits (N, V).

    Returns the tokens (N,) and the top-2 logit margin (N,) used to tell numerical
    near-ties from logic errors when two runs diverge.
    """
    vocab = logits.shape[-1]
    top2 = logits.topk(2, dim=-1).values  # (N, 2)
    margin = top2[:, 0] - top2[:, 1]
    greedy = logits.argmax(dim=-1)

    scaled = logits / params.temperature.clamp_min(1e-5)[:, None]
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
