"""Continuous-batching scheduler: pure Python, no torch, so it is tested on its own.

The scheduler owns the request lifecycle (pending arrival -> waiting -> running in a slot ->
finished) and decides each step. It never sees device tensors: the engine hands it the
host copy of each step's sampled tokens in `on_tokens`.
"""

from __future__ import annotations

import bisect
import enum
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from reference_engine.config import ConfigError
from reference_engine.faults import Fault
from reference_engine.request import Request


class StepKind(enum.Enum):
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(frozen=True)
class ScheduledStep:
    """One engine forward: which requests run in it, in which slots.

    Post-processing reads this record, never the scheduler's current slot table, so a
    slot handed to a new request cannot receive an older step's token.
    """

    index: int
    kind: StepKind
    requests: tuple[Request, ...]

    @property
    def slots(self) -> list[int]:
        return [r.slot for r in self.requests]  # type: ignore[misc]

    @property
    def num_tokens(self) -> int:
        """Tokens the forward processes (prompt tokens for prefill, one per row for decode)."""
        if self.kind is StepKind.PREFILL:
            return sum(len(r.prompt) for r in self.requests)
        return len(self.requests)


class Scheduler:
    """Admits arrived requests into free slots (prefill first), otherwise decodes.

    `max_prefill_tokens` bounds the prompt tokens of one prefill step; a prompt longer than
    that still runs, alone. `emitted` logs (step index, request id) for every token the host
    accepted, in order: which step delivered which request's next token. `faults` plants
    bugs for testing verifiers (reference_engine.faults); none by default.
    """

    def __init__(
        self,
        max_num_seqs: int,
        max_model_len: int,
        max_prefill_tokens: int,
        faults: Collection[Fault] = (),
    ) -> None:
        if max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        if max_model_len < 2:
            raise ConfigError(f"max_model_len must be >= 2, got {max_model_len}")
        self.max_model_len = max_model_len
        self.max_prefill_tokens = max_prefill_tokens
        self.pending: list[Request] = []  # not yet arrived, sorted by arrival time
        self.waiting: deque[Request] = deque()
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
        admitted = self._admit()
        if admitted:
            return self._make_step(StepKind.PREFILL, admitted)
        running = [r for r in self.slots if r is not None and r.schedulable]
        if self._runs_past_max_tokens:  # planted fault: `<=` where `<` is right
            running = [r for r in self.slots if r is not None and _at_most_max_tokens(r)]
        return self._make_step(StepKind.DECODE, running) if running else None

    def _admit(self) -> list[Request]:
        free = [i for i, r in enumerate(self.slots) if r is None]
        admitted: list[Request] = []
        budget = self.max_prefill_tokens
        while self.waiting and free:
            request = self.waiting[0]
            if admitted and len(request.prompt) > budget:
                break
            self.waiting.popleft()
            request.slot = free.pop(0)
            self.slots[request.slot] = request
            budget -= len(request.prompt)
            admitted.append(request)
        return admitted

    def _make_step(self, kind: StepKind, requests: list[Request]) -> ScheduledStep:
        for request in requests:
            request.num_scheduled += 1
            request.in_flight += 1
        step = ScheduledStep(self.num_steps, kind, tuple(requests))
        self.num_steps += 1
        return step

    def on_tokens(
        self,
        step: ScheduledStep,
        tokens: list[int],
        margins: list[float],
        now_s: float,
        eos_token_id: int,
    ) -> list[Request]:
        """Apply a step's sampled tokens (indexed by slot); returns requests that finished.

        A request that already stopped gets its token discarded: under the overlap
        schedule it ran one step past its stop before the host knew.
        """
        finished, emit, index = [], self.emitted.append, step.index
        for ran in step.requests:
            request = ran
            if self._frees_slots_early:  # planted fault: the row's owner per today's slots
                request = self.slots[ran.slot] or ran  # type: ignore[index]
            request.in_flight -= 1
            if request.finished and not self._keeps_lag_token:
                request.discarded += 1
            else:
                token = tokens[ran.slot]  # type: ignore[index]
                request.output.append(token)
                request.margins.append(margins[ran.slot])  # type: ignore[index]
                request.token_times_s.append(now_s)
                emit((index, request.request_id))
                if request.finish_reason is None:  # (a leaked lag token must not un-stop it)
                    request.finish_reason = request.stop_reason(token, eos_token_id)
                    if request.finished:
                        finished.append(request)
                        self.finished.append(request)
            self._release_if_done(request)
        return finished

    def _release_if_done(self, request: Request) -> None:
        # Only once no launched step reads the slot may a new request take it.
        # (Planted fault EARLY_SLOT_REUSE frees it at once.)
        done = request.finished and request.slot is not None
        if done and (request.in_flight == 0 or self._frees_slots_early):
            self.slots[request.slot] = None  # type: ignore[index]


def _at_most_max_tokens(request: Request) -> bool:
    return not request.finished and request.num_scheduled <= request.params.max_tokens
