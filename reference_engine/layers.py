"""Small building blocks shared by the decoder: norm, rotary embedding, dense FFN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 like the real models; bf16 variance loses too much.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


class Rotary(nn.Module):
    """RoPE on the first `rotary_dim` dims of each head (GLM rotates half, ERNIE all)."""

    def __init__(self, rotary_dim: int, theta: float, max_len: int) -> None:
        super().__init__()
        self.rotary_dim, self.theta = rotary_dim, theta
        self.register_buffer("cos", torch.empty(max_len, rotary_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(max_len, rotary_dim // 2), persistent=False)
        if not self.cos.is_meta:
            self.fill_tables()

    def fill_tables(self) -> None:
        """Compute the cos/sin tables (max_len, rotary_dim / 2) in float64, store fp32."""
        dims = torch.arange(0, self.rotary_dim, 2, dtype=torch.float64)
        inv_freq = 1.0 / self.theta ** (dims / self.rotary_dim)
        angles = torch.outer(torch.arange(self.cos.shape[0], dtype=torch.float64), inv_freq)
        self.cos.copy_(angles.cos())
        self.sin.copy_(angles.sin())

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: (N, heads, head_dim); positions: (N,)."""
        rot, rest = x[..., : self.rotary_dim].float(), x[..., self.rotary_dim :]
        cos = self.cos[positions].unsqueeze(1)  # (N, 1, rot/2)
        sin = self.sin[positions].unsqueeze(1)
        x1, x2 = rot.chunk(2, dim=-1)
        rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return torch.cat((rotated.to(x.dtype), rest), dim=-1)


class DenseMLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
