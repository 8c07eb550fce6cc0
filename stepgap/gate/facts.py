"""Facts: named run-level values a rule can check, beyond the per-mode summary metrics.

A fact is a function of the gate's inputs that returns a value (true/false or a number)
and one line saying why. Rules name facts like metrics: `tokens_identical == true`.

Extension point. A new source of verdicts plugs in by registering facts. The verdict file
of `stepgap verify --out verdict.json`, for one, becomes `verify.passed` like this:

    from stepgap.gate.facts import Fact, FactValue, register_fact
    from stepgap.verify.verdict import load_verdict

    def verify_passed(inputs: GateInputs) -> FactValue:
        verdict = load_verdict(inputs.attachment("verify", "verify.passed"))
        return FactValue(bool(verdict["passed"]), "stepgap verify verdict")

    register_fact(Fact("verify.passed", "stepgap verify passed", verify_passed))

after which `check = "verify.passed == true"` works in any rules file, given
`stepgap gate RUN --rules R --attach verify=verdict.json`. A fact whose input is missing
raises GateInputError (the gate exits 2: bad input, not a failed check). Fact names win
over `MODE.METRIC` when both could match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stepgap.gate.inputs import GateInputError, GateInputs
from stepgap.identity import compare_tokens


@dataclass(frozen=True)
class FactValue:
    """A fact's value and one line explaining it."""

    value: bool | float
    detail: str


@dataclass(frozen=True)
class Fact:
    """A named, documented way to measure one run-level value."""

    name: str
    description: str
    measure: Callable[[GateInputs], FactValue]

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"fact name {self.name!r} must be one word (dots allowed)")


FACTS: dict[str, Fact] = {}


def register_fact(fact: Fact, replace: bool = False) -> Fact:
    """Make `fact` available to rules; a second fact of the same name needs `replace`."""
    if fact.name in FACTS and not replace:
        raise ValueError(f"a fact named {fact.name!r} is already registered")
    FACTS[fact.name] = fact
    return fact


def tokens_identical(inputs: GateInputs) -> FactValue:
    """Sync vs overlap (the run's first mode vs each other mode): equal token ids per request."""
    modes = inputs.modes
    if len(modes) < 2:
        raise GateInputError(
            f"tokens_identical compares the modes of a `--mode both` run; {inputs.run_path} "
            f"has only {modes[0]}"
        )
    reference = inputs.runs[modes[0]]
    details, identical = [], True
    for mode in modes[1:]:
        other = inputs.runs[mode]
        identity = compare_tokens(reference.tokens, other.tokens, reference.margins, other.margins)
        identical &= identity.identical
        details.append(f"{modes[0]} vs {mode}: {identity.describe()}")
    return FactValue(identical, "; ".join(details))


def tokens_identical_to_baseline(inputs: GateInputs) -> FactValue:
    """Each mode of the run vs the same mode of the baseline: equal token ids per request."""
    subject = "tokens_identical_to_baseline"
    if inputs.baseline is None:
        raise GateInputError(f"{subject} compares with a baseline: pass --baseline RUN")
    common = [m for m in inputs.modes if m in inputs.baseline]
    if not common:
        raise GateInputError(
            f"{subject}: the run ({', '.join(inputs.modes)}) and the baseline "
            f"({', '.join(inputs.baseline)}) share no mode"
        )
    details, identical = [], True
    for mode in common:
        run, base = inputs.runs[mode], inputs.baseline[mode]
        identity = compare_tokens(base.tokens, run.tokens, base.margins, run.margins)
        identical &= identity.identical
        details.append(f"{mode} vs baseline: {identity.describe()}")
    return FactValue(identical, "; ".join(details))


register_fact(
    Fact(
        "tokens_identical",
        "sync and overlap of the run emitted the same token ids for every request",
        tokens_identical,
    )
)
register_fact(
    Fact(
        "tokens_identical_to_baseline",
        "each mode emitted the same token ids as that mode of --baseline",
        tokens_identical_to_baseline,
    )
)
