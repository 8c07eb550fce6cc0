"""Facts: named run-level values a rule can check, beyond the per-mode summary metrics.

A fact is a function of the gate's inputs that returns a value (true/false or a number)
and one line saying why. Rules name facts like metrics: `tokens_identical == true`.

Extension point. A new source of verdicts plugs in by registering a fact; `verify.passed`
below is one: it reads the verdict file of `stepgap verify --out verdict.json`, given as
`stepgap gate RUN --rules R --verify verdict.json` (or `--attach verify=verdict.json`), so

    [[rule]]
    check = "verify.passed == true"

works in any rules file. The shape of such a fact:

    def verify_passed(inputs: GateInputs) -> FactValue:
        verdict = read_verdict(inputs.attachment("verify", "verify.passed"))
        return FactValue(verdict["passed"], verdict_detail(verdict))

    register_fact(Fact("verify.passed", "stepgap verify passed", verify_passed))

A fact whose input is missing or unreadable raises GateInputError (the gate exits 2: bad
input, not a failed check). Fact names win over `MODE.METRIC` when both could match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepgap.gate.inputs import GateInputError, GateInputs
from stepgap.identity import run_identity
from stepgap.verify.verdict import VerdictError, load_verdict


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
        if not reference.tokens and not other.tokens:
            raise GateInputError(
                f"tokens_identical: {inputs.run_path} recorded no tokens (an analyzed trace?)"
            )
        identity = run_identity(reference, other)
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
        identity = run_identity(base, run)
        identical &= identity.identical
        details.append(f"{mode} vs baseline: {identity.describe()}")
    return FactValue(identical, "; ".join(details))


def read_verdict(path: Path) -> dict[str, Any]:
    """A `stepgap verify` verdict file; GateInputError when it is missing or not a verdict."""
    try:
        return load_verdict(path)
    except VerdictError as error:
        raise GateInputError(f"verify.passed: {error}") from None


def verdict_detail(verdict: dict[str, Any]) -> str:
    """One line on a verdict: its summary (runs passed, faults caught), and where it failed."""
    summary = verdict.get("summary")
    parts = [summary if isinstance(summary, str) and summary else _runs_line(verdict)]
    first = verdict.get("first_failure")
    if isinstance(first, dict) and first.get("check"):
        parts.append(f"first failure: {first['check']} at {_where(first)}")
    faults = verdict.get("faults")
    by_fault = faults.get("by_fault") if isinstance(faults, dict) else None
    if isinstance(by_fault, dict):
        missed = [
            name
            for name, row in by_fault.items()
            if isinstance(row, dict) and not row.get("caught")
        ]
        if missed:
            parts.append(f"planted faults not caught: {', '.join(missed)}")
    return "; ".join(parts)


def _runs_line(verdict: dict[str, Any]) -> str:
    runs, failed = verdict.get("runs"), verdict.get("runs_failed")
    if isinstance(runs, int) and isinstance(failed, int):
        return f"stepgap verify: {runs - failed}/{runs} runs passed"
    return f"stepgap verify {'passed' if verdict['passed'] else 'failed'}"


def _where(finding: dict[str, Any]) -> str:
    """`overlap run, request 3, position 5, step 12`, as `stepgap verify` prints it."""
    parts = [f"{finding.get('mode', '?')} run"]
    for label in ("request_id", "position", "step"):
        if finding.get(label) is not None:
            parts.append(f"{label.removesuffix('_id')} {finding[label]}")
    return ", ".join(parts)


def verify_passed(inputs: GateInputs) -> FactValue:
    """The `passed` of the `stepgap verify` verdict attached as `verify`."""
    if "verify" not in inputs.attachments:
        raise GateInputError(
            "verify.passed reads a `stepgap verify --out` verdict: pass --verify FILE "
            "(or --attach verify=FILE)"
        )
    verdict = read_verdict(inputs.attachment("verify", "verify.passed"))
    detail = verdict_detail(verdict)
    other_revision = _other_revision(verdict, inputs)
    if other_revision:
        detail += f" ({other_revision})"
    return FactValue(verdict["passed"], detail)


def _other_revision(verdict: dict[str, Any], inputs: GateInputs) -> str | None:
    """A note when the verdict was made at another git revision than the run: a stale
    verdict may vouch for code the run does not have."""
    environment = verdict.get("environment")
    verified = environment.get("git_revision") if isinstance(environment, dict) else None
    run_environment = inputs.runs[inputs.modes[0]].meta.get("environment") or {}
    run = run_environment.get("git_revision")
    if not verified or not run or verified == run:
        return None
    return f"verdict of git revision {verified}, the run's is {run}"


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
register_fact(
    Fact(
        "verify.passed",
        "`stepgap verify` passed: every invariant held in every run (and, with --all-faults, "
        "every planted fault was caught); reads --verify FILE / --attach verify=FILE",
        verify_passed,
    )
)

from stepgap.gate import predict_facts  # noqa: E402,F401  (registers the predict.* facts)
