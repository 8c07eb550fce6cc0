"""What the checks read of one engine run: per-request outputs, per-step membership, and the
host's log of which step delivered each token. Plain frozen data, so checks are testable on
hand-made traces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference_engine import SamplingParams

if TYPE_CHECKING:
    from reference_engine import RunOutput


@dataclass(frozen=True)
class RequestTrace:
    """One request's outcome: its stop rule and what it emitted."""

    request_id: int
    params: SamplingParams  # max_tokens, stop ids, ignore_eos (`mixes.expected_output` reads it)
    slot: int | None
    tokens: tuple[int, ...]
    margins: tuple[float, ...]
    finish_reason: str | None  # "length", "eos", "stop_token" or None (never finished)
    logprobs: tuple[float, ...] = ()  # the sampled tokens' (when the request asked)
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] = ()


@dataclass(frozen=True)
class StepTrace:
    """One launched step: its kind and the requests (and their slots) that ran in it: a
    request's first token comes from the step that ran its prompt's last chunk."""

    index: int
    kind: str  # "prefill", "decode" or "mixed"
    request_ids: tuple[int, ...]  # the requests it delivers a token to
    slots: tuple[int, ...]
    prefilled_ids: tuple[int, ...] = ()  # of those, the ones whose prompt it finished


@dataclass(frozen=True)
class RunTrace:
    """One run under one schedule. `emitted` is (step, request id) per accepted token, in
    the order the host accepted them; a request's k-th entry delivered its position k."""

    mode: str
    requests: dict[int, RequestTrace]
    steps: tuple[StepTrace, ...]
    emitted: tuple[tuple[int, int], ...]
    complete: bool
    error: str | None = None

    def emission_steps(self) -> dict[int, list[int]]:
        """Per request, the step that delivered each of its positions."""
        by_request: dict[int, list[int]] = {rid: [] for rid in self.requests}
        for step, rid in self.emitted:
            by_request.setdefault(rid, []).append(step)
        return by_request

    def steps_running(self) -> dict[int, list[int]]:
        """Per request, the steps it ran in, in launch order."""
        by_request: dict[int, list[int]] = {rid: [] for rid in self.requests}
        for step in self.steps:
            for rid in step.request_ids:
                by_request.setdefault(rid, []).append(step.index)
        return by_request


def trace_run(output: RunOutput) -> RunTrace:
    """The trace of a finished (or interrupted) engine run."""
    requests = {
        r.request_id: RequestTrace(
            r.request_id,
            r.params,
            r.slot,
            tuple(r.output),
            tuple(r.margins),
            r.finish_reason.value if r.finish_reason else None,
            tuple(r.logprobs),
            tuple(tuple(top) for top in r.top_logprobs),
        )
        for r in output.requests
    }
    steps = tuple(
        StepTrace(
            record.step.index,
            record.step.kind.value,
            tuple(r.request_id for r in record.step.requests),
            tuple(record.step.slots),
            tuple(c.request.request_id for c in record.step.chunks if c.last),
        )
        for record in output.steps
    )
    return RunTrace(output.mode, requests, steps, tuple(output.emitted), output.complete)


def failed_run(mode: str, error: BaseException) -> RunTrace:
    """The trace of a run that raised before it could finish."""
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    return RunTrace(mode, {}, (), (), complete=False, error=message)
