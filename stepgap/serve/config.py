"""What `stepgap serve` runs: which model, under which schedule, on which port."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from reference_engine.config import ConfigError, ModelConfig
from reference_engine.faults import Fault, parse_faults
from reference_engine.request import MAX_LOGPROBS


class Schedule(enum.StrEnum):
    """The engine's two schedules (`reference_engine.engine.MODES`)."""

    SYNC = "sync"
    OVERLAP = "overlap"


def parse_schedule(value: str | Schedule) -> Schedule:
    try:
        return Schedule(value)
    except ValueError:
        raise ConfigError(f"unknown mode {value!r}; choose sync or overlap") from None


@dataclass(frozen=True)
class ServeConfig:
    """The reference engine behind an OpenAI-compatible server.

    `faults` is a testing option, off by default: bugs planted in the overlap loop
    (reference_engine.faults), so that `stepgap bench` + `stepgap compare` can be shown to
    find them through the HTTP API. Never plant one in a server you measure.
    """

    model: ModelConfig
    mode: Schedule = Schedule.SYNC
    host: str = "127.0.0.1"
    port: int = 8000
    max_num_seqs: int = 8
    max_model_len: int = 256
    device: str = "auto"
    engine_seed: int = 0
    faults: tuple[Fault, ...] = ()
    served_model_name: str | None = None
    max_logprobs: int = MAX_LOGPROBS  # requests may ask for this many; 0: the engine computes none
    idle_close_s: float = 0.5  # an engine run ends after this long with nothing to do
    max_run_steps: int = 50_000  # a busy run stops taking requests here and drains
    graceful_shutdown_s: int = 30  # open streams may finish this long after a stop

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_schedule(self.mode))
        object.__setattr__(self, "faults", parse_faults(self.faults))
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_num_seqs", "max_run_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_model_len < 3:
            raise ConfigError(f"max_model_len must be >= 3, got {self.max_model_len}")
        if not 0 <= self.max_logprobs <= MAX_LOGPROBS:
            raise ConfigError(
                f"max_logprobs must be in [0, {MAX_LOGPROBS}], got {self.max_logprobs}"
            )
        if self.idle_close_s <= 0 or self.graceful_shutdown_s < 0:
            raise ConfigError("idle_close_s must be > 0 and graceful_shutdown_s >= 0")
        if self.faults and self.mode is not Schedule.OVERLAP:
            raise ConfigError("planted faults live in the overlap loop: pass --mode overlap")

    @property
    def model_name(self) -> str:
        """The name clients pass as `model` (and /v1/models lists)."""
        return self.served_model_name or self.model.name

    @property
    def max_prompt_and_output(self) -> int:
        """Prompt + max_tokens one request may ask for (the engine keeps one scratch row)."""
        return self.max_model_len - 1
