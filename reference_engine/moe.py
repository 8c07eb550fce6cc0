"""Routed mixture of experts with shared experts, static-shaped and batch-invariant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_engine.config import ModelConfig
from reference_engine.layers import DenseMLP


class MoE(nn.Module):
    """Top-k routed experts (GLM: sigmoid router, ERNIE: softmax) plus shared experts.

    Every token runs through every expert and the top-k routing weights (zero elsewhere)
    combine the results. That costs reading each expert's weights once per step, which a
    grouped MoE kernel at decode concurrency does nearly as well, and buys what the engine
    needs: fixed shapes (CUDA-graph capturable, no host sync on expert counts) and a
    result per token that does not depend on the other tokens in the batch.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        e, h, i = config.num_experts, config.hidden_size, config.moe_intermediate_size
        self.top_k = config.num_experts_per_tok
        self.router_kind = config.router
        self.norm_topk_prob = config.norm_topk_prob
        self.scale = config.routed_scaling_factor
        self.router = nn.Parameter(torch.empty(e, h))
        self.correction_bias = nn.Parameter(torch.zeros(e))  # selection-only bias, as GLM/ERNIE
        self.gate_up = nn.Parameter(torch.empty(e, h, 2 * i))
        self.down = nn.Parameter(torch.empty(e, i, h))
        self.shared = (
            DenseMLP(h, i * config.num_shared_experts) if config.num_shared_experts else None
        )

    def routing_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Dense (N, E) routing weights: the top-k experts' weights, zero for the rest."""
        logits = x.float() @ self.router.float().t()  # (N, E); routers run in fp32
        scores = logits.sigmoid() if self.router_kind == "sigmoid" else logits.softmax(-1)
        chosen = (scores + self.correction_bias.float()).topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, chosen)  # (N, k)
        if self.norm_topk_prob:
            weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-20)
        dense = torch.zeros_like(scores).scatter_(1, chosen, weights * self.scale)
        return dense.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, H) -> (N, H)."""
        weights = self.routing_weights(x)  # (N, E)
        experts = self.gate_up.shape[0]
        gate, up = torch.bmm(x.expand(experts, *x.shape), self.gate_up).chunk(2, dim=-1)
        expert_out = torch.bmm(F.silu(gate) * up, self.down)  # (E, N, H)
        out = torch.bmm(weights.unsqueeze(1), expert_out.transpose(0, 1)).squeeze(1)  # (N, H)
        return out + self.shared(x) if self.shared is not None else out
