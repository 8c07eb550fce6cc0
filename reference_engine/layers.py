"""Small building blocks shared by the decoder: norm, rotary embedding, dense FFN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_engine.kernels import KernelBackend
from reference_engine.kernels.rowwise import rms_norm, rotary


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps
        self.backend = KernelBackend.TORCH

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H): normalised in fp32 like the real models (bf16 variance loses too much)."""
        return rms_norm(x, self.weight, self.eps, self.backend)


class Rotary(nn.Module):
    """RoPE on the first `rotary_dim` dims of each head (GLM rotates half, ERNIE all)."""

    def __init__(self, rotary_dim: int, theta: float, max_len: int) -> None:
        super().__init__()
        self.rotary_dim, self.theta = rotary_dim, theta
        self.register_buffer("cos", torch.empty(max_len, rotary_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(max_len, rotary_dim // 2), persistent=False)
        self.backend = KernelBackend.TORCH
        if not self.cos.is_meta:
            self.fill_tables()

    def fill_tables(self) -> None:
        """Compute the cos/sin tables (max_len, rotary_dim / 2) in float64, store fp32."""
        dims = torch.arange(0, self.rotary_dim, 2, dtype=torch.float64)
        inv_freq = 1.0 / self.theta ** (dims / self.rotary_dim)
        cos, sin = self.get_buffer("cos"), self.get_buffer("sin")
        angles = torch.outer(torch.arange(cos.shape[0], dtype=torch.float64), inv_freq)
        cos.copy_(angles.cos())
        sin.copy_(angles.sin())

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: (N, heads, head_dim); positions: (N,)."""
        return rotary(x, positions, self.cos, self.sin, self.backend)


class DenseMLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
