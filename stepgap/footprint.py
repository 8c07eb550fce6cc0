"""What a run will allocate, estimated from shapes before anything is allocated, and the
refusal when it cannot fit: "needs 63.0 GB on cpu, 22.9 GB available (KV cache 62.9 GB, ...)".

The estimate counts what the engine allocates for the whole run — weights, the static KV
cache, the packed step tables (one device and two pinned host copies), the rotary tables —
plus the largest activations of a decode and a prefill step and the host's request
bookkeeping. It is a floor: the allocator and the framework add some on top, so a run is
refused once it would take more than `USABLE_SHARE` of the memory present. Under tensor
parallelism it is one rank's: weights and KV cache split N ways (one GPU each; on CPU all
N ranks share the host).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reference_engine.config import ConfigError, ModelConfig

USABLE_SHARE = 0.9
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PYTHON_INT_BYTES = 36  # a token id in a Python list: the pointer and (above 256) the int
FLOAT32, INT64 = 4, 8


@dataclass(frozen=True)
class Shape:
    """What fixes a run's memory: model, slots, cache length, prompt sizes, requests."""

    model: ModelConfig
    slots: int
    max_model_len: int
    max_prefill_tokens: int
    longest_prompt: int
    num_requests: int
    output_len: int

    def __post_init__(self) -> None:
        for name in ("slots", "max_model_len", "max_prefill_tokens", "longest_prompt"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")


@dataclass(frozen=True)
class Footprint:
    """Estimated bytes by what holds them."""

    weights: int
    kv_cache: int
    buffers: int
    activations: int
    host: int  # request bookkeeping, in host memory on any device

    @property
    def device_total(self) -> int:
        return self.weights + self.kv_cache + self.buffers + self.activations

    def describe(self) -> str:
        parts = [
            ("weights", self.weights),
            ("KV cache", self.kv_cache),
            ("buffers", self.buffers),
            ("activations", self.activations),
            ("requests", self.host),
        ]
        return ", ".join(f"{name} {gigabytes(size)}" for name, size in parts)


def gigabytes(size: float) -> str:
    return f"{size / 1e9:.1f} GB"


def estimate(shape: Shape, dtype: str, tensor_parallel: int = 1) -> Footprint:
    """The run's allocations with weights and cache in `dtype` ("float32", "bfloat16"), on
    one of `tensor_parallel` ranks (activations counted whole: a bound)."""
    width, ranks = BYTES[dtype], tensor_parallel
    m = shape.model
    kv = m.num_layers * 2 * shape.slots * shape.max_model_len * m.num_kv_heads * m.head_dim
    prompt_capacity = max(shape.max_prefill_tokens, shape.max_model_len)
    table = shape.slots * 4 + prompt_capacity + (shape.slots + 1) * 2
    rotary = shape.max_model_len * m.rotary_dim * FLOAT32
    return Footprint(
        weights=m.num_parameters() * width // ranks,
        kv_cache=kv * width // ranks,
        buffers=3 * table * INT64 + rotary,
        activations=_activations(shape, width),
        host=shape.num_requests * (shape.longest_prompt + 3 * shape.output_len) * PYTHON_INT_BYTES,
    )


def _activations(shape: Shape, width: int) -> int:
    """The larger of a decode step's (logits and sampling over every slot, MoE rows) and a
    prefill's (attention scores of the longest prompt, hidden states of its tokens)."""
    m = shape.model
    decode = shape.slots * (m.vocab_size * 3 * FLOAT32 + m.hidden_size * 16 * width)
    decode += shape.slots * m.num_experts_per_tok * m.moe_intermediate_size * 3 * width
    scores = m.num_heads * shape.longest_prompt**2 * FLOAT32
    tokens = min(shape.max_prefill_tokens, shape.longest_prompt)
    prefill = scores + tokens * (m.hidden_size * 16 + m.dense_intermediate_size * 3) * width
    return max(decode, prefill)


def check_fits(
    footprint: Footprint, device: str, device_free: int, host_free: int, ranks: int = 1
) -> None:
    """Raise a one-line ConfigError with the numbers when the run cannot fit (`footprint`
    of one of `ranks` ranks: one GPU each, or all of them on the host)."""
    on_host = footprint.host + (footprint.device_total * ranks if device == "cpu" else 0)
    each = device if ranks == 1 else f"{device} (each of {ranks} ranks)"
    needs = [(footprint.device_total, each, device_free)] if device != "cpu" else []
    needs.append((on_host, "cpu" if device == "cpu" else "the host", host_free))
    for size, where, free in needs:
        if size > USABLE_SHARE * free:
            raise ConfigError(
                f"this run needs {gigabytes(size)} on {where}, {gigabytes(free)} available "
                f"({footprint.describe()}); lower --concurrency, --output-len, "
                "--num-requests or the model's size"
            )


def host_available_bytes() -> int:
    """Memory the host can still give (Linux: MemAvailable; else free physical pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
