"""Evaluate rules against a run (and a baseline): one CheckResult per mode a rule applies to.

Kinds of check:
- bound: `overlap.gap_p50_us <= 30` — a metric (or numeric fact) against a number;
- ratio: `overlap/sync idle_fraction < 1` — one mode's metric over another's, same run;
- regression: `tpot_p50_ms <= baseline + 5%` — a metric against the same mode of the
  baseline. It fails only when the limit is crossed *and* the bootstrap interval of the
  relative change (stepgap.gate.noise) lies wholly on the bad side of zero; a crossing the
  noise cannot tell from no change passes, marked `within_noise`;
- fact: `tokens_identical == true` — a registered fact (stepgap.gate.facts).

A plain metric (`gap_p50_us`) applies to every mode of the run, one check per mode; a
qualified one (`overlap.gap_p50_us`) to that mode only. A value that is missing (NaN) fails.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepgap.gate.facts import FACTS, FactValue
from stepgap.gate.inputs import GateInputError, GateInputs, load_inputs, metric_value
from stepgap.gate.noise import ChangeInterval, NoiseSettings, change_interval, metric_samples
from stepgap.gate.rules import Rule, RuleSet, load_rules
from stepgap.metric_registry import canonical
from stepgap.rank_metrics import split_key

_COMPARE = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one rule on one mode (or on the run, for ratios and facts)."""

    rule: Rule
    subject: str  # what was measured: "overlap.gap_p50_us", "overlap/sync idle_fraction", ...
    passed: bool
    value: float | bool | None
    limit: float | bool | None  # what the value was compared with, by rule.op
    detail: str
    mode: str | None = None  # set when a plain-metric rule was applied to this mode
    baseline_value: float | None = None
    change_pct: float | None = None
    noise: ChangeInterval | None = None
    within_noise: bool = False  # passed only because the change is within run-to-run noise

    @property
    def status(self) -> str:
        if not self.passed:
            return "FAIL"
        return "PASS (noise)" if self.within_noise else "PASS"

    @property
    def title(self) -> str:
        """The check's name: the rule's name, and the mode a plain-metric rule expanded to."""
        return f"{self.rule.name} [{self.mode}]" if self.mode else self.rule.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.title,
            "check": self.rule.check,
            "kind": self.rule.kind,
            "line": self.rule.line,
            "subject": self.subject,
            "mode": self.mode,
            "status": self.status,
            "passed": self.passed,
            "within_noise": self.within_noise,
            "value": self.value,
            "op": self.rule.op,
            "limit": self.limit,
            "baseline_value": self.baseline_value,
            "change_pct": self.change_pct,
            "noise": self.noise.to_dict() if self.noise else None,
            "detail": self.detail,
            "description": self.rule.description,
        }


@dataclass(frozen=True)
class GateReport:
    """Every check of a gate, with what was gated against what."""

    run: str
    rules_file: str
    checks: tuple[CheckResult, ...]
    baseline: str | None = None
    noise: NoiseSettings = field(default_factory=NoiseSettings)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def noise_passes(self) -> list[CheckResult]:
        """Checks that crossed their limit but passed because the change is within noise."""
        return [c for c in self.checks if c.within_noise]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "run": self.run,
            "baseline": self.baseline,
            "rules_file": self.rules_file,
            "checks_total": len(self.checks),
            "checks_failed": len(self.failures),
            "passed_within_noise": [c.title for c in self.noise_passes],
            "noise": {
                "confidence": self.noise.confidence,
                "resamples": self.noise.resamples,
                "seed": self.noise.seed,
            },
            "checks": [c.to_dict() for c in self.checks],
        }


def run_gate(
    run_path: str | Path,
    rules_path: str | Path,
    baseline_path: str | Path | None = None,
    attachments: Mapping[str, Path] | None = None,
) -> GateReport:
    """Load the rules, the run, the baseline and attached files; evaluate every rule."""
    rules = load_rules(rules_path)
    inputs = load_inputs(run_path, baseline_path, attachments)
    return evaluate(rules, inputs)


def evaluate(rules: RuleSet, inputs: GateInputs) -> GateReport:
    """Evaluate `rules` on `inputs`. Raises GateInputError (naming file and line) when a
    rule cannot be evaluated on these runs: an unknown metric or mode, no baseline."""
    checks: list[CheckResult] = []
    for rule in rules.rules:
        try:
            checks.extend(_evaluate_rule(rule, inputs, rules.noise))
        except GateInputError as error:
            where = f"{rules.source} line {rule.line}" if rule.line else rules.source
            raise GateInputError(f"{where}: {error}") from None
    baseline = str(inputs.baseline_path) if inputs.baseline_path else None
    return GateReport(str(inputs.run_path), rules.source, tuple(checks), baseline, rules.noise)


def _evaluate_rule(rule: Rule, inputs: GateInputs, noise: NoiseSettings) -> list[CheckResult]:
    if rule.kind == "ratio":
        return [_ratio(rule, inputs)]
    if rule.subject in FACTS:
        if rule.kind == "regression":
            raise GateInputError(f"{rule.subject} is a fact: baseline checks take a metric")
        return [_fact(rule, inputs)]
    if rule.kind == "fact":
        raise GateInputError(
            f"{rule.subject!r} is not a fact ({_fact_names()}); metrics compare with numbers"
        )
    targets = _metric_targets(rule.subject, inputs)
    if rule.kind == "regression":
        return [_regression(rule, m, metric, inputs, noise, exp) for m, metric, exp in targets]
    return [_bound(rule, m, metric, inputs, exp) for m, metric, exp in targets]


def _metric_targets(subject: str, inputs: GateInputs) -> list[tuple[str, str, bool]]:
    """(mode, metric, expanded) for each mode `subject` applies to. A tensor-parallel run's
    per-rank metrics are dotted (`rank1.gap_p50_us`, `slowest.gap_p99_us`): plain, they
    apply to every mode; `overlap.rank1.gap_p50_us` to one."""
    valid = inputs.summary_metrics()
    mode, dot, metric = subject.partition(".")
    if not dot or split_key(subject) is not None:
        _check_metric(subject, valid)
        return [(m, subject, len(inputs.modes) > 1) for m in inputs.modes]
    if mode not in inputs.runs:
        raise GateInputError(
            f"unknown mode or fact {mode!r} in {subject!r}: the run has modes "
            f"{', '.join(inputs.modes)}; {_fact_names()}"
        )
    _check_metric(metric, valid)
    return [(mode, metric, False)]


def _check_metric(metric: str, valid: list[str]) -> None:
    if metric in valid or canonical(metric) in valid:  # schema-1 names still read
        return
    close = difflib.get_close_matches(metric, valid + list(FACTS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise GateInputError(
        f"unknown metric {metric!r}{hint}; valid metrics: {', '.join(valid)}; {_fact_names()}"
    )


def _fact_names() -> str:
    return f"facts: {', '.join(sorted(FACTS))}"


def _holds(value: float | bool, op: str, limit: float | bool) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(_COMPARE[op](value, limit))


def _missing(value: float) -> bool:
    return math.isnan(value)


def _bound(rule: Rule, mode: str, metric: str, inputs: GateInputs, expanded: bool) -> CheckResult:
    subject = f"{mode}.{metric}"
    value = metric_value(inputs.mode_run(mode, rule.check), metric)
    target = float(rule.target)  # type: ignore[arg-type]
    passed = _holds(value, rule.op, target)
    detail = (
        f"{subject} has no value in this run"
        if _missing(value)
        else f"{subject} = {value:.6g} {'' if passed else 'not '}{rule.op} {target:g}"
    )
    return CheckResult(rule, subject, passed, value, target, detail, mode if expanded else None)


def _ratio(rule: Rule, inputs: GateInputs) -> CheckResult:
    num_mode, den_mode = rule.modes  # type: ignore[misc]
    if rule.subject in FACTS:
        raise GateInputError(f"{rule.subject} is a fact: ratios take a summary metric")
    _check_metric(rule.subject, inputs.summary_metrics())
    num = metric_value(inputs.mode_run(num_mode, rule.check), rule.subject)
    den = metric_value(inputs.mode_run(den_mode, rule.check), rule.subject)
    value = num / den if den != 0 and not (_missing(num) or _missing(den)) else math.nan
    target = float(rule.target)  # type: ignore[arg-type]
    passed = _holds(value, rule.op, target)
    subject = f"{num_mode}/{den_mode} {rule.subject}"
    if _missing(value):
        detail = f"{subject}: undefined ({num_mode} {num:.6g} / {den_mode} {den:.6g})"
    else:
        detail = (
            f"{subject} = {num:.6g} / {den:.6g} = {value:.4g} "
            f"{'' if passed else 'not '}{rule.op} {target:g}"
        )
    return CheckResult(rule, subject, passed, value, target, detail)


def _fact(rule: Rule, inputs: GateInputs) -> CheckResult:
    measured: FactValue = FACTS[rule.subject].measure(inputs)
    value = measured.value
    if rule.kind == "fact" and not isinstance(value, bool):
        raise GateInputError(f"{rule.subject} is a number, not true/false: compare it with one")
    if rule.kind == "bound" and isinstance(value, bool):
        raise GateInputError(f"{rule.subject} is true/false: check it with == true")
    limit = rule.target
    passed = _holds(value, rule.op, limit)  # type: ignore[arg-type]
    shown = str(value).lower() if isinstance(value, bool) else f"{value:.6g}"
    detail = f"{rule.subject} = {shown}: {measured.detail}"
    return CheckResult(rule, rule.subject, passed, value, limit, detail)


def _regression(
    rule: Rule,
    mode: str,
    metric: str,
    inputs: GateInputs,
    settings: NoiseSettings,
    expanded: bool,
) -> CheckResult:
    subject = f"{mode}.{metric}"
    run = inputs.mode_run(mode, rule.check)
    base_run = inputs.baseline_run(mode, rule.check)
    value, base = metric_value(run, metric), metric_value(base_run, metric)
    tolerance = rule.tolerance_pct or 0.0
    limit = base * (1.0 + tolerance / 100.0)
    change = (value / base - 1.0) * 100.0 if base != 0 else math.nan
    current_samples, base_samples = metric_samples(run, metric), metric_samples(base_run, metric)
    interval = None
    if current_samples is not None and base_samples is not None:
        interval = change_interval(base_samples, current_samples, settings)

    def result(passed: bool, detail: str, within_noise: bool = False) -> CheckResult:
        return CheckResult(
            rule,
            subject,
            passed,
            value,
            limit,
            detail,
            mode if expanded else None,
            base,
            change,
            interval,
            within_noise,
        )

    if _missing(value) or _missing(base):
        return result(False, f"{subject}: no value (run {value:.6g}, baseline {base:.6g})")
    head = (
        f"{subject} {value:.6g} vs baseline {base:.6g}: {_pct(change)} "
        f"(limit {rule.op} {limit:.6g}, baseline {_pct(tolerance)})"
    )
    if _holds(value, rule.op, limit):
        return result(True, head + (f"; noise {interval.describe()}" if interval else ""))
    if interval is None:
        return result(False, f"{head}; no per-sample data to estimate noise: limit alone decides")
    level = f"{interval.confidence:.0%} interval of the change {interval.describe()}"
    if interval.excludes_zero(rule.lower_is_better):
        return result(False, f"{head}; {level} excludes no change: regression")
    return result(True, f"{head}; {level} includes no change: passed only because of noise", True)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.1f}%"
