"""Routed mixture of experts with shared experts, static-shaped and batch-invariant."""

from __future__ import annotations

import torch
from torch import nn

from reference_engine.config import ModelConfig, RouterKind
from reference_engine.kernels import KernelBackend
from reference_engine.kernels.fused_moe import moe_experts
from reference_engine.layers import DenseMLP
from reference_engine.parallel.group import SINGLE, TensorParallel


def route(
    x: torch.Tensor,
    router: torch.Tensor,
    correction_bias: torch.Tensor,
    top_k: int,
    router_kind: RouterKind,
    norm_topk_prob: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing of x (N, H): (weights fp32 (N, k) with `scale` applied, ids int64 (N, k)).

    Routers run in fp32. GLM scores with a sigmoid, ERNIE with a softmax; the correction bias
    only steers which experts are chosen, the weights are the unbiased scores, optionally
    normalised over the k chosen.
    """
    logits = x.float() @ router.float().t()  # (N, E)
    scores = logits.sigmoid() if router_kind == "sigmoid" else logits.softmax(-1)
    topk_ids = (scores + correction_bias.float()).topk(top_k, dim=-1).indices
    weights = scores.gather(1, topk_ids)  # (N, k)
    if norm_topk_prob:
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-20)
    return weights * scale, topk_ids


class MoE(nn.Module):
    """Top-k routed experts (GLM: sigmoid router, ERNIE: softmax) plus shared experts.

    `route` picks each token's k experts; `moe_experts` runs them by `self.backend`: the
    torch reference (every token through every expert, combined with dense routing weights)
    or the Triton kernels (only the experts hit are read). Both keep what the engine needs:
    CUDA-graph capturable, no host sync on expert counts, and a result per token that does
    not depend on the other tokens in the batch.

    Under tensor parallelism every rank holds every expert (and the shared experts) at
    intermediate size I/N and routes the same way; its output is a partial sum that the
    decoder layer all-reduces once.
    """

    def __init__(self, config: ModelConfig, tp: TensorParallel = SINGLE) -> None:
        super().__init__()
        e, h, i = config.num_experts, config.hidden_size, tp.split(config.moe_intermediate_size)
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
        self.backend = KernelBackend.TORCH  # the routed experts' implementation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, H) -> (N, H): route, the routed experts by `self.backend`, shared experts."""
        topk_weights, topk_ids = route(
            x,
            self.router,
            self.correction_bias,
            self.top_k,
            self.router_kind,
            self.norm_topk_prob,
            self.scale,
        )
        out = moe_experts(x, topk_ids, topk_weights, self.gate_up, self.down, self.backend)
        return out + self.shared(x) if self.shared is not None else out
