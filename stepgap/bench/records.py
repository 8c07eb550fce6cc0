"""One benchmark request's outcome, as the client observed it (times: seconds from the
benchmark's start, `time.perf_counter` on the client)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stepgap.bench.chunks import ChunkUpdate
from stepgap.bench.plan import BenchRequest


@dataclass(frozen=True)
class RequestResult:
    """What came back for one request; `error` is None when it succeeded."""

    request: BenchRequest
    sent_s: float  # the POST went out (after the concurrency limit let it)
    chunk_times_s: tuple[float, ...]  # each chunk that carried choices arrived
    token_ids: tuple[int, ...]
    token_times_s: tuple[float, ...]  # per token: when its chunk arrived
    logprobs: tuple[float | None, ...]
    margins: tuple[float, ...]
    finish_reason: str | None
    stop_reason: int | str | None
    completion_tokens: int | None  # the server's usage count
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None and bool(self.chunk_times_s)

    @property
    def output_tokens(self) -> int:
        """Generated tokens: the ids received, else the server's usage, else the chunks."""
        if self.token_ids:
            return len(self.token_ids)
        if self.completion_tokens is not None:
            return self.completion_tokens
        return len(self.chunk_times_s)

    @property
    def latency_s(self) -> float:
        """vllm bench serve's latency (E2EL): sent to the last chunk with choices."""
        return self.chunk_times_s[-1] - self.sent_s if self.chunk_times_s else math.nan


@dataclass
class ResultBuilder:
    """Collects a request's chunks while its stream runs."""

    request: BenchRequest
    sent_s: float = math.nan
    chunk_times_s: list[float] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    token_times_s: list[float] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    completion_tokens: int | None = None
    error: str | None = None

    def add(self, update: ChunkUpdate, now_s: float) -> None:
        if update.error is not None:
            self.error = update.error
            return
        if update.has_choices:
            self.chunk_times_s.append(now_s)
        if ids := update.token_ids:
            self.token_ids += ids
            self.token_times_s += [now_s] * len(ids)
            self.logprobs += update.logprobs
            self.margins += update.margins
        if update.finish_reason:
            self.finish_reason, self.stop_reason = update.finish_reason, update.stop_reason
        if update.completion_tokens is not None:
            self.completion_tokens = update.completion_tokens

    def result(self) -> RequestResult:
        return RequestResult(
            self.request,
            self.sent_s,
            tuple(self.chunk_times_s),
            tuple(self.token_ids),
            tuple(self.token_times_s),
            tuple(self.logprobs),
            tuple(self.margins),
            self.finish_reason,
            self.stop_reason,
            self.completion_tokens,
            self.error or (None if self.chunk_times_s else "no chunk with choices received"),
        )


@dataclass(frozen=True)
class BenchOutcome:
    """Every request's result, the benchmark's duration, and what the server said it is."""

    model: str
    model_card: dict[str, Any]
    results: tuple[RequestResult, ...]
    duration_s: float
    started: str
    origin_s: float  # time.perf_counter() at the start: the zero of every result's times
