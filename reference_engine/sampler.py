"""Sampling on the device without host sync: greedy, temperature, top-k, top-p.

Randomness is Gumbel-max noise drawn from a counter-based hash of (seed, position, token
id), not from a stateful generator: a request samples the same token at the same position
whatever it is batched with, whichever schedule runs it, on whichever rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference_engine.kernels import KernelBackend

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
    # the top 23 bits: (k + 0.5) / 2**23 is exact in fp32 and < 1 (24 bits rounded the
    # largest value to 1.0, an infinite Gumbel draw once in 16.7 M tokens)
    uniform = ((bits >> 9).float() + 0.5) * (1.0 / 2**23)  # in (0, 1)
    return -torch.log(-torch.log(uniform))


@dataclass
class SamplingTensors:
    """Per-row sampling parameters, all (N,): the position is the sampled token's."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    seed: torch.Tensor
    position: torch.Tensor


def sample(
    logits: torch.Tensor, params: SamplingTensors, backend: KernelBackend = KernelBackend.TORCH
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of fp32 logits (N, V).

    Returns the tokens (N,) and the top-2 logit margin (N,) used to tell numerical
    near-ties from logic errors when two runs diverge. `backend` picks the torch reference
    (`sample_torch`: a full-vocabulary sort) or the Triton kernel (`sample_triton`: partial
    selection); both live in `reference_engine.kernels.sampling`.
    """
    from reference_engine.kernels import sampling  # it imports this module

    return sampling.sample_with(logits, params, backend)
