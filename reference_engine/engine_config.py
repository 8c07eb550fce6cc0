"""The engine's configuration: `EngineConfig` (shapes, numerics, device, testing options)
and the model runner it builds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reference_engine.config import ConfigError, ModelConfig
from reference_engine.device import Device
from reference_engine.faults import Fault, parse_faults
from reference_engine.jitter import Jitter
from reference_engine.kernels import KernelBackend
from reference_engine.model_runner import ModelRunner
from reference_engine.parallel.group import SINGLE, TensorParallel
from reference_engine.parallel.shapes import check_tensor_parallel

Mode = Literal["sync", "overlap"]
MODES: tuple[Mode, ...] = ("sync", "overlap")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that fixes the engine's shapes and numerics.

    `faults` and `jitter` are testing options, off by default and never for measurements:
    bugs planted in the overlap loop (reference_engine.faults) and seeded schedule jitter
    (reference_engine.jitter), with which `stepgap verify` tests itself and the engine.
    """

    model: ModelConfig
    max_num_seqs: int = 8
    max_model_len: int = 256
    max_prefill_tokens: int = 4096
    max_num_batched_tokens: int | None = None  # set: chunked prefill with this step budget
    device: str = "auto"
    cuda_graphs: bool = True
    kernels: KernelBackend | None = None  # None: Triton kernels on CUDA, torch elsewhere
    seed: int = 0
    faults: tuple[Fault, ...] = ()
    jitter: Jitter | None = None
    tensor_parallel: int = 1  # ranks, a process and a device each (reference_engine.parallel)
    tp_timeout_s: float = 60.0  # a rank this far behind rank 0's latest launch fails the run

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", parse_faults(self.faults))
        if self.jitter is not None and not isinstance(self.jitter, Jitter):
            raise ConfigError(f"jitter must be a Jitter or None, got {self.jitter!r}")
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_model_len < 2:
            raise ConfigError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if self.max_prefill_tokens < 1:
            raise ConfigError(f"max_prefill_tokens must be >= 1, got {self.max_prefill_tokens}")
        budget = self.max_num_batched_tokens
        if budget is not None and budget <= self.max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens ({budget}) must exceed max_num_seqs "
                f"({self.max_num_seqs}): a step holds a full decode batch plus prompt tokens"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        if self.kernels is not None:
            object.__setattr__(self, "kernels", _kernel_backend(self.kernels))
        check_tensor_parallel(self.model, self.tensor_parallel)
        if not 0 < self.tp_timeout_s <= 86_400:
            raise ConfigError(f"tp_timeout_s must be in (0, 86400], got {self.tp_timeout_s}")


def make_runner(
    config: EngineConfig,
    device: Device,
    tp: TensorParallel = SINGLE,
    runner_type: Callable[..., ModelRunner] = ModelRunner,
) -> ModelRunner:
    """The model runner of `config` on `device`: the whole model, or rank `tp.rank`'s shard."""
    return runner_type(
        config.model,
        device,
        config.max_num_seqs,
        config.max_model_len,
        max(config.max_prefill_tokens, config.max_num_batched_tokens or 0),
        seed=config.seed,
        cuda_graphs=config.cuda_graphs,
        kernels=config.kernels,
        tp=tp,
    )


def _kernel_backend(value: KernelBackend | str) -> KernelBackend:
    try:
        return KernelBackend(value)
    except ValueError:
        choices = ", ".join(b.value for b in KernelBackend)
        raise ConfigError(f"unknown kernels {value!r}; choose {choices}") from None
