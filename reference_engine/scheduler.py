"""Continuous-batching scheduler: pure Python, no torch, so it is tested on its own.

The scheduler owns the request lifecycle (pending arrival -> waiting -> running in a slot ->
finished) and decides each step. It never sees device tensors: the engine hands it the
host copy of each step's results in `on_tokens`.
"""

from __future__ import annotations

import bisect
import enum
import functools
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from reference_engine.config import ConfigError
from reference_engine.faults import Fault
from reference_engine.request import FinishReason, Request


class StepResults(Protocol):
    """A finished step's results on the host, indexed by slot (the runner's output table)."""

    @property
    def tokens(self) -> Sequence[int]: ...

    @property
    def margins(self) -> Sequence[float]: ...

    def logprob(self, slot: int) -> float: ...

    def top_logprobs(self, slot: int, n: int) -> tuple[list[int], list[float]]: ...


class StepKind(enum.Enum):
    PREFILL = "prefill"  # prompt chunks only
    DECODE = "decode"  # one new token per running request only
    MIXED = "mixed"  # decode rows and prompt chunks in one step (chunked prefill)


@dataclass(frozen=True)
class PrefillChunk:
    """Prompt positions [start, start + length) of one request, run in one step. The last
    chunk of a prompt samples the request's first token."""

    request: Request
    start: int
    length: int

    @property
    def last(self) -> bool:
        return self.start + self.length == len(self.request.prompt)


@dataclass(frozen=True)
class ScheduledStep:
    """One engine step: the running requests it decodes and the prompt chunks it prefills.

    Post-processing reads this record, never the scheduler's current slot table, so a
    slot handed to a new request cannot receive an older step's token.
    """

    index: int
    kind: StepKind
    decodes: tuple[Request, ...] = ()
    chunks: tuple[PrefillChunk, ...] = ()

    @functools.cached_property  # read by the scheduler and the runner every step
    def requests(self) -> tuple[Request, ...]:
        """The requests this step delivers a token to: decode rows, then last chunks."""
        return self.decodes + tuple(c.request for c in self.chunks if c.last)

    @property
    def slots(self) -> list[int]:
        return [r.slot for r in self.requests]  # type: ignore[misc]

    @property
    def prefill_tokens(self) -> int:
        return sum(c.length for c in self.chunks)

    @property
    def num_tokens(self) -> int:
        """Tokens the forward processes: one per decode row, plus every chunk's length."""
        return len(self.decodes) + self.prefill_tokens


class Scheduler:
    """Admits arrived requests into free slots, prefills their prompts, decodes the rest.

    Two prefill policies. Whole prompts (`max_num_batched_tokens=None`): a step prefills
    whole prompts of newly admitted requests, at most `max_prefill_tokens` of them (a longer
    prompt still runs, alone), with priority over decoding. Chunked (`max_num_batched_tokens`
    set, as vLLM names it): every step decodes all running requests and fills the rest of
    its token budget with prompt chunks, long prompts split across steps. Chunks are cut at
    fixed multiples of `chunk_size = max_num_batched_tokens - max_num_seqs` from each
    prompt's start (the budget always keeps room for a full decode batch), so a request's
    chunks, and their numerics, never depend on what else was running.

    `emitted` logs (step index, request id) for every token the host accepted, in order:
    which step delivered which request's next token. `faults` plants bugs for testing
    verifiers (reference_engine.faults); none by default.
    """

    def __init__(
        self,
        max_num_seqs: int,
        max_model_len: int,
        max_prefill_tokens: int,
        faults: Collection[Fault] = (),
        max_num_batched_tokens: int | None = None,
    ) -> None:
        if max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        if max_model_len < 2:
            raise ConfigError(f"max_model_len must be >= 2, got {max_model_len}")
        if max_num_batched_tokens is not None and max_num_batched_tokens <= max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens ({max_num_batched_tokens}) must exceed max_num_seqs "
                f"({max_num_seqs}): it holds a full decode batch plus prompt tokens"
            )
        self.max_model_len = max_model_len
        self.max_prefill_tokens = max_prefill_tokens
        self.chunk_size = None if max_num_batched_tokens is None else (
            max_num_batched_tokens - max_num_seqs
        )  # fmt: skip
        self.pending: list[Request] = []  # not yet arrived, sorted by arrival time
        self.waiting: deque[Request] = deque()
        self.prefilling: list[Request] = []  # admitted, prompt not yet all in the cache
        self.slots: list[Request | None] = [None] * max_num_seqs
        self.finished: list[Request] = []
        self.num_steps = 0
        self.emitted: list[tuple[int, int]] = []
        # Planted faults, decided once here so the per-token path tests plain attributes.
        self._frees_slots_early = Fault.EARLY_SLOT_REUSE in faults
        self._keeps_lag_token = Fault.NO_STOP_LAG in faults
        self._runs_past_max_tokens = Fault.OFF_BY_ONE_MAX_TOKENS in faults

    def add(self, request: Request) -> None:
        """Queue a request; it becomes eligible at its arrival time."""
        # The last cache row is the scratch row idle slots write to (see ModelRunner).
        if len(request.prompt) + request.params.max_tokens > self.max_model_len - 1:
            raise ConfigError(
                f"request {request.request_id}: prompt ({len(request.prompt)}) + max_tokens "
                f"({request.params.max_tokens}) exceeds max_model_len - 1 "
                f"({self.max_model_len - 1})"
            )
        keys = [r.arrival_s for r in self.pending]
        self.pending.insert(bisect.bisect_right(keys, request.arrival_s), request)

    @property
    def has_unfinished(self) -> bool:
        return bool(self.pending or self.waiting or any(self.slots))

    def next_arrival_s(self) -> float | None:
        return self.pending[0].arrival_s if self.pending else None

    def schedule(self, now_s: float) -> ScheduledStep | None:
        """The next step to launch, or None when nothing can run yet."""
        while self.pending and self.pending[0].arrival_s <= now_s:
            self.waiting.append(self.pending.pop(0))
        if self.chunk_size is None:
            admitted = self._admit(self.max_prefill_tokens)
            if admitted:
                return self._make_step([], [PrefillChunk(r, 0, len(r.prompt)) for r in admitted])
            return self._make_step(self._decodable(), [])
        self._admit(budget=None)
        return self._make_step(self._decodable(), self._next_chunks(self.chunk_size))

    def _next_chunks(self, chunk_size: int) -> list[PrefillChunk]:
        """The next chunk of each prefilling request, in admission order, while they fit
        in one chunk's budget."""
        chunks: list[PrefillChunk] = []
        budget = chunk_size
        for request in self.prefilling:
            length = min(chunk_size, len(request.prompt) - request.prefilled)
            if length > budget:
                break
            chunks.append(PrefillChunk(request, request.prefilled, length))
            budget -= length
        return chunks

    def _decodable(self) -> list[Request]:
        if self._runs_past_max_tokens:  # planted fault: `<=` where `<` is right
            return [r for r in self.slots if r is not None and _at_most_max_tokens(r)]
        return [r for r in self.slots if r is not None and r.schedulable]

    def _admit(self, budget: int | None) -> list[Request]:
        """Give waiting requests free slots, first come first served; with a `budget`, only
        as many prompt tokens as it holds (the first request always)."""
        free = [i for i, r in enumerate(self.slots) if r is None]
        admitted: list[Request] = []
        while self.waiting and free:
            request = self.waiting[0]
            if budget is not None and admitted and len(request.prompt) > budget:
                break
            self.waiting.popleft()
            request.slot = free.pop(0)
            self.slots[request.slot] = request
            self.prefilling.append(request)
            budget = None if budget is None else budget - len(request.prompt)
            admitted.append(request)
        return admitted

    def _make_step(
        self, decodes: list[Request], chunks: list[PrefillChunk]
    ) -> ScheduledStep | None:
        if not decodes and not chunks:
            return None
        kind = StepKind.MIXED if decodes and chunks else (
            StepKind.DECODE if decodes else StepKind.PREFILL
        )  # fmt: skip
        for chunk in chunks:
            chunk.request.prefilled += chunk.length
            if chunk.last:
                self.prefilling.remove(chunk.request)
        step = ScheduledStep(self.num_steps, kind, tuple(decodes), tuple(chunks))
        for request in step.requests:  # the rows that deliver a token
            request.num_scheduled += 1
            request.in_flight += 1
        self.num_steps += 1
        return step

    def on_tokens(
        self, step: ScheduledStep, outputs: StepResults, now_s: float, eos_token_id: int
    ) -> list[Request]:
        """Apply a step's results (indexed by slot); returns requests that finished.

        A request that already stopped gets its token discarded: under the overlap
        schedule it ran one step past its stop before the host knew.
        """
        finished, emit, index = [], self.emitted.append, step.index
        tokens, margins = outputs.tokens, outputs.margins
        for ran in step.requests:
            request = ran
            if self._frees_slots_early:  # planted fault: the row's owner per today's slots
                request = self.slots[ran.slot] or ran  # type: ignore[index]
            request.in_flight -= 1
            if request.finished and not self._keeps_lag_token:
                request.discarded += 1
            else:
                slot = ran.slot
                token = tokens[slot]  # type: ignore[index]
                request.output.append(token)
                request.margins.append(margins[slot])  # type: ignore[index]
                _append_logprobs(request, outputs, slot)  # type: ignore[arg-type]
                request.token_times_s.append(now_s)
                emit((index, request.request_id))
                if request.finish_reason is None:  # (a leaked lag token must not un-stop it)
                    request.finish_reason = request.stop_reason(token, eos_token_id)
                    if request.finished:
                        finished.append(request)
                        self.finished.append(request)
            self._release_if_done(request)
        return finished

    def abort(self, request: Request) -> None:
        """Cancel `request` (a server's client went away): it leaves the queues, stops with
        FinishReason.ABORT, and frees its slot once no launched step reads it (the token
        such a step brings is discarded, as after any stop)."""
        if request.finished:
            return
        request.finish_reason = FinishReason.ABORT
        for queue in (self.pending, self.waiting, self.prefilling):
            if request in queue:
                queue.remove(request)
        self._release_if_done(request)

    def _release_if_done(self, request: Request) -> None:
        # Only once no launched step reads the slot may a new request take it.
        # (Planted fault EARLY_SLOT_REUSE frees it at once.)
        done = request.finished and request.slot is not None
        if done and (request.in_flight == 0 or self._frees_slots_early):
            self.slots[request.slot] = None  # type: ignore[index]


def _append_logprobs(request: Request, outputs: StepResults, slot: int) -> None:
    wanted = request.params.logprobs
    if wanted is not None:
        request.logprobs.append(outputs.logprob(slot))
        request.top_logprobs.append(*outputs.top_logprobs(slot, wanted))


def _at_most_max_tokens(request: Request) -> bool:
    finished = request.finished
    return request.decoding and not finished and request.num_scheduled <= request.params.max_tokens
