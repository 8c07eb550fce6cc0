"""Model shapes: presets of the real models stepgap mirrors, tiny variants, and overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

RouterKind = Literal["sigmoid", "softmax"]


class ConfigError(ValueError):
    """A configuration value is out of range; the message is one line meant for users."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder-only MoE transformer.

    Layers before `first_moe_layer` use a dense SwiGLU FFN, the rest a routed MoE with
    `num_experts_per_tok` of `num_experts` experts plus `num_shared_experts` always-on ones.
    """

    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    dense_intermediate_size: int
    moe_intermediate_size: int
    num_experts: int
    num_experts_per_tok: int
    num_shared_experts: int
    first_moe_layer: int = 1
    router: RouterKind = "softmax"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    partial_rotary_factor: float = 1.0
    rope_theta: float = 10_000.0
    qkv_bias: bool = False
    tie_embeddings: bool = False
    rms_norm_eps: float = 1e-5
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        positive = (
            "vocab_size hidden_size num_layers num_heads num_kv_heads head_dim "
            "dense_intermediate_size moe_intermediate_size num_experts num_experts_per_tok"
        )
        for field in positive.split():
            if getattr(self, field) <= 0:
                raise ConfigError(f"model {self.name}: {field} must be > 0")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model {self.name}: num_heads must be a multiple of num_kv_heads")
        if self.num_experts_per_tok > self.num_experts:
            raise ConfigError(f"model {self.name}: num_experts_per_tok exceeds num_experts")
        if self.num_shared_experts < 0 or not 0 <= self.first_moe_layer <= self.num_layers:
            raise ConfigError(f"model {self.name}: bad shared experts or first_moe_layer")
        if self.rotary_dim <= 0 or self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ConfigError(f"model {self.name}: rotary dim must be even and in (0, head_dim]")
        if self.router not in ("sigmoid", "softmax"):
            raise ConfigError(f"model {self.name}: router must be 'sigmoid' or 'softmax'")
        if not 0 <= self.eos_token_id < self.vocab_size:
            raise ConfigError(f"model {self.name}: eos_token_id outside the vocabulary")

    @property
    def rotary_dim(self) -> int:
        """Dimensions of each head that RoPE rotates (GLM rotates half of them)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def num_parameters(self) -> int:
        """Parameter count of the model this config builds, computed from shapes alone."""
        h, d = self.hidden_size, self.head_dim
        attn = h * d * (self.num_heads * 2 + self.num_kv_heads * 2) + 2 * h
        if self.qkv_bias:
            attn += d * (self.num_heads + 2 * self.num_kv_heads)
        dense = 3 * h * self.dense_intermediate_size
        expert = 3 * h * self.moe_intermediate_size
        moe = (self.num_experts + self.num_shared_experts) * expert + h * self.num_experts
        moe += self.num_experts  # router correction bias
        n_moe = self.num_layers - self.first_moe_layer
        embed = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        return embed + h + self.num_layers * attn + self.first_moe_layer * dense + n_moe * moe


GLM_45_AIR = ModelConfig(
    name="glm-4.5-air",
    vocab_size=151_552,
    hidden_size=4096,
    num_layers=46,
    num_heads=96,
    num_kv_heads=8,
    head_dim=128,
    dense_intermediate_size=10_944,
    moe_intermediate_size=1408,
    num_experts=128,
    num_experts_per_tok=8,
    num_shared_experts=1,
    router="sigmoid",
    partial_rotary_factor=0.5,
    rope_theta=1_000_000.0,
    qkv_bias=True,
    eos_token_id=151_329,
)

ERNIE_45_21B_A3B = ModelConfig(
    name="ernie-4.5-21b-a3b",
    vocab_size=103_424,
    hidden_size=2560,
    num_layers=28,
    num_heads=20,
    num_kv_heads=4,
    head_dim=128,
    dense_intermediate_size=12_288,
    moe_intermediate_size=1536,
    num_experts=64,
    num_experts_per_tok=6,
    num_shared_experts=2,
    router="softmax",
    rope_theta=500_000.0,
    tie_embeddings=True,
    eos_token_id=2,
)

# Tiny variants keep every structural feature (dense first layer, GQA, partial rotary,
# router kind, shared experts, tied embeddings) at a size that decodes fast on 2 CPU cores.
_TINY: dict[str, Any] = dict(
    vocab_size=512,
    hidden_size=64,
    num_layers=3,
    head_dim=16,
    dense_intermediate_size=128,
    moe_intermediate_size=32,
    eos_token_id=2,
)
GLM_45_AIR_TINY = dataclasses.replace(
    GLM_45_AIR,
    name="glm-4.5-air-tiny",
    num_heads=6,
    num_kv_heads=2,
    num_experts=16,
    num_experts_per_tok=4,
    **_TINY,
)
ERNIE_45_TINY = dataclasses.replace(
    ERNIE_45_21B_A3B,
    name="ernie-4.5-tiny",
    num_heads=4,
    num_kv_heads=2,
    num_experts=8,
    num_experts_per_tok=2,
    **_TINY,
)

PRESETS: dict[str, ModelConfig] = {
    c.name: c for c in (GLM_45_AIR, ERNIE_45_21B_A3B, GLM_45_AIR_TINY, ERNIE_45_TINY)
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, with fields replaced by `overrides` (e.g. ``num_layers=4``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    base = PRESETS[name]
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model override(s) {', '.join(unknown)}")
    if overrides and "name" not in overrides:
        overrides["name"] = base.name + "".join(f"+{k}={v}" for k, v in sorted(overrides.items()))
    return dataclasses.replace(base, **overrides)
