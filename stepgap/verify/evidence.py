"""What a verification case's checks read and report: the `Evidence` (the same stopped
workload under sync and overlap, and a stop-free reference run), and each violation found
as a `Finding` naming the bad (request, position, step) with both schedules' values there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from stepgap.verify.trace import RunTrace

MODES = ("sync", "overlap")
COMPARED = "sync vs overlap"  # a Finding's `mode` when it compares the two schedules
LAGGED = "(the overlap's lagged step) "


@dataclass(frozen=True)
class ValueAt:
    """What one run emitted for a (request, position): token, top-2 margin, delivering step."""

    token: int | None
    margin: float | None
    step: int | None

    def describe(self) -> str:
        if self.token is None:
            return "no token"
        margin = "" if self.margin is None else f" (top-2 margin {self.margin:.4g})"
        step = "" if self.step is None else f" from step {self.step}"
        return f"token {self.token}{margin}{step}"


@dataclass(frozen=True)
class Finding:
    """One violated invariant. `step` is a step of the `mode` run (of the overlap run when
    the finding compares schedules); `None` fields do not apply to the check."""

    check: str
    mode: str
    request_id: int | None
    position: int | None
    step: int | None
    sync: ValueAt | None
    overlap: ValueAt | None
    reference_token: int | None
    diagnosis: str

    def sort_key(self) -> tuple[float, int]:
        from stepgap.verify.checks import CHECKS  # the registry's order (it imports us)

        step = math.inf if self.step is None else self.step
        return (step, list(CHECKS).index(self.check))

    def where(self) -> str:
        parts = [f"{self.mode} run"]
        for label, value in (("request", self.request_id), ("position", self.position)):
            if value is not None:
                parts.append(f"{label} {value}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """Everything the checks read for one case."""

    reference: dict[int, list[int]]  # stop-free sync run: tokens per request
    eos_token_id: int
    sync: RunTrace
    overlap: RunTrace
    margin_tolerance: float = 0.0
    reference_margins: dict[int, list[float]] = field(default_factory=dict)

    def run(self, mode: str) -> RunTrace:
        return self.sync if mode == "sync" else self.overlap

    def usable(self) -> list[RunTrace]:
        """The runs that finished without raising (the others have nothing to check)."""
        return [run for run in (self.sync, self.overlap) if run.error is None]

    @functools.cached_property
    def _emission_steps(self) -> dict[str, dict[int, list[int]]]:
        return {mode: self.run(mode).emission_steps() for mode in MODES}

    def emission_step(self, mode: str, request_id: int, position: int) -> int | None:
        steps = self._emission_steps[mode].get(request_id, [])
        return steps[position] if 0 <= position < len(steps) else None

    @functools.cached_property
    def _reference_values(self) -> dict[tuple[int, float], tuple[int, int]]:
        values = {}
        for rid, margins in self.reference_margins.items():
            tokens = self.reference.get(rid, [])
            for k, (token, margin) in enumerate(zip(tokens, margins, strict=False)):
                values[(token, margin)] = (rid, k)
        return values

    def source_of(self, token: int, margin: float) -> tuple[int, int] | None:
        """The (request, position) whose token and top-2 margin the stop-free reference
        computed as these: an fp32 margin is a fingerprint of one row of one step."""
        return self._reference_values.get((token, margin))

    def value_at(self, mode: str, request_id: int, position: int) -> ValueAt | None:
        run = self.run(mode)
        if run.error is not None:
            return None
        request = run.requests.get(request_id)
        if request is None or position >= len(request.tokens):
            return ValueAt(None, None, None)
        step = self.emission_step(mode, request_id, position)
        return ValueAt(request.tokens[position], request.margins[position], step)

    def finding(
        self, check: str, mode: str, request_id: int, position: int, diagnosis: str, step=None
    ) -> Finding:
        """A Finding at (request, position) carrying both schedules' values there."""
        if step is None:
            step_mode = "overlap" if mode == COMPARED else mode
            step = self.emission_step(step_mode, request_id, position)
        reference = self.reference.get(request_id, [])
        return Finding(
            check,
            mode,
            request_id,
            position,
            step,
            self.value_at("sync", request_id, position),
            self.value_at("overlap", request_id, position),
            reference[position] if position < len(reference) else None,
            diagnosis,
        )


Check = Callable[[Evidence], list[Finding]]


def finding_about(check: str, mode: str, diagnosis: str, request_id=None, step=None) -> Finding:
    """A finding about a run or a step as a whole, with no position or values."""
    return Finding(check, mode, request_id, None, step, None, None, None, diagnosis)
