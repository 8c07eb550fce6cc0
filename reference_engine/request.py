"""Requests and their sampling parameters."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from reference_engine.config import ConfigError
from reference_engine.top_logprobs import TopLogprobs

MAX_LOGPROBS = 20  # as the OpenAI API allows per token


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples and when it stops.

    `temperature == 0` is greedy. `top_k <= 0` and `top_p == 1` switch those filters off.
    Sampling randomness is a pure function of (`seed`, token position), so a request draws
    the same tokens whatever it is batched with and whichever schedule runs it.
    """

    max_tokens: int = 16
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; n: the sampled token's and the top n (<= 20)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 100.0:
            raise ConfigError(f"temperature must be in [0, 100], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be in [0, 2**63), got {self.seed}")
        if any(t < 0 for t in self.stop_token_ids):
            raise ConfigError("stop_token_ids must be non-negative token ids")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ConfigError(f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}")


class FinishReason(enum.Enum):
    LENGTH = "length"
    EOS = "eos"
    STOP_TOKEN = "stop_token"
    ABORT = "abort"  # cancelled before it stopped (a server's client went away)


@dataclass
class Request:
    """One generation request and its progress through the engine.

    `num_scheduled` counts output tokens the engine has launched work for; it runs ahead of
    `len(output)` by the steps still in flight. `in_flight` counts launched steps not yet
    post-processed; a finished request keeps its slot until it drops to zero.
    """

    request_id: int
    prompt: list[int]
    params: SamplingParams
    arrival_s: float = 0.0
    output: list[int] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # per token, when asked for
    top_logprobs: TopLogprobs = field(default_factory=TopLogprobs)  # flat: no GC traffic
    token_times_s: list[float] = field(default_factory=list)
    slot: int | None = None
    num_scheduled: int = 0
    prefilled: int = 0  # prompt tokens scheduled into the KV cache so far
    in_flight: int = 0
    discarded: int = 0
    finish_reason: FinishReason | None = None

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ConfigError(f"request {self.request_id}: empty prompt")
        if self.arrival_s < 0:
            raise ConfigError(f"request {self.request_id}: negative arrival time")

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def decoding(self) -> bool:
        """Its whole prompt is scheduled and its first token launched: it decodes now."""
        return self.prefilled == len(self.prompt) and self.num_scheduled > 0

    @property
    def schedulable(self) -> bool:
        """Whether another token may be launched: never past max_tokens, even in flight."""
        return self.decoding and not self.finished and self.num_scheduled < self.params.max_tokens

    @property
    def input_position(self) -> int:
        """Position of the last token fed in the latest scheduled step: the last prompt
        token for the prefill, then the previously sampled token for each decode."""
        return len(self.prompt) + self.num_scheduled - 2

    def stop_reason(self, token: int, eos_token_id: int) -> FinishReason | None:
        """Why appending `token` ends this request, if it does (vLLM's stop rules)."""
        if token in self.params.stop_token_ids:
            return FinishReason.STOP_TOKEN
        if token == eos_token_id and not self.params.ignore_eos:
            return FinishReason.EOS
        if len(self.output) >= self.params.max_tokens:
            return FinishReason.LENGTH
        return None
