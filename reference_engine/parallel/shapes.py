"""What a tensor-parallel size must divide, checked before anything is built (torch-free)."""

from __future__ import annotations

from reference_engine.config import ConfigError, ModelConfig

MAX_TENSOR_PARALLEL = 64


def sharded_dims(config: ModelConfig) -> dict[str, int]:
    """The model dimensions split across ranks, by config field name."""
    return {
        "num_heads": config.num_heads,
        "num_kv_heads": config.num_kv_heads,
        "dense_intermediate_size": config.dense_intermediate_size,
        "moe_intermediate_size": config.moe_intermediate_size,
        "vocab_size": config.vocab_size,
    }


def check_tensor_parallel(config: ModelConfig, size: int) -> None:
    """Raise a one-line ConfigError unless `size` ranks can split `config` evenly."""
    if not isinstance(size, int) or not 1 <= size <= MAX_TENSOR_PARALLEL:
        raise ConfigError(f"tensor_parallel must be in [1, {MAX_TENSOR_PARALLEL}], got {size!r}")
    bad = [f"{name} ({n})" for name, n in sharded_dims(config).items() if n % size]
    if bad:
        raise ConfigError(
            f"tensor_parallel {size} does not divide model {config.name}'s {', '.join(bad)}"
        )
