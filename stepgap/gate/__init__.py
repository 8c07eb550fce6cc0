"""CI gates: rules on a run's metrics, mode ratios, regressions against a baseline (noise-aware)
and token identity, reported as a table, JUnit XML, Markdown or JSON."""

from stepgap.gate.evaluate import CheckResult, GateReport, evaluate, run_gate
from stepgap.gate.facts import FACTS, Fact, FactValue, register_fact
from stepgap.gate.inputs import GateInputError, GateInputs, load_inputs
from stepgap.gate.noise import NoiseSettings
from stepgap.gate.rules import Rule, RulesError, RuleSet, load_rules, parse_check, parse_rules

__all__ = [
    "FACTS",
    "CheckResult",
    "Fact",
    "FactValue",
    "GateInputError",
    "GateInputs",
    "GateReport",
    "NoiseSettings",
    "Rule",
    "RuleSet",
    "RulesError",
    "evaluate",
    "load_inputs",
    "load_rules",
    "parse_check",
    "parse_rules",
    "register_fact",
    "run_gate",
]
