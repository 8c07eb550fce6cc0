"""The gate's rules file: TOML with one `[[rule]]` table per check, parsed into frozen rules.

    [noise]                                   # optional; these are the defaults
    confidence = 0.95                         # of the bootstrap interval
    resamples = 2000
    seed = 0

    [[rule]]
    check = "overlap.gap_p50_us <= 30"        # absolute bound on one mode's metric
    [[rule]]
    check = "gap_p50_us <= 30"                # a plain metric: one check per mode of the run
    [[rule]]
    check = "overlap/sync output_throughput_tok_s >= 1.05"   # ratio between two modes
    [[rule]]
    check = "tpot_p50_ms <= baseline + 5%"    # may grow at most 5 % over --baseline
    name = "TPOT"                             # optional: the test-case name
    description = "decode latency budget"     # optional: shown with failures
    [[rule]]
    check = "tokens_identical == true"        # a fact (see stepgap.gate.facts)
    [[rule]]
    check = "overlap.rank1.gap_p50_us <= 30"  # tensor parallel: a rank's (or `slowest.`)

The check grammar is `SUBJECT OP TARGET` with OP one of `<= < >= > == = !=` (`=` means
`==`). TARGET is a number, `true`/`false` (facts only), or `baseline`, optionally `± N%`.
Which name is a metric, a mode or a fact is resolved against the run when the gate is
evaluated; this module checks everything that can be checked from the file alone, and every
error names the file and line.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stepgap.gate.noise import NoiseSettings

RuleKind = Literal["bound", "ratio", "regression", "fact"]
OPERATORS = ("<=", "<", ">=", ">", "==", "!=")
RULE_KEYS = ("check", "name", "description")
TOP_LEVEL_KEYS = ("rule", "noise")

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_DOTTED = rf"{_NAME}(?:\.{_NAME})*"
_CHECK = re.compile(r"^\s*(?P<subject>.+?)\s*(?P<op><=|>=|==|!=|<|>|=)\s*(?P<target>.+?)\s*$")
_RATIO = re.compile(rf"^(?P<num>{_NAME})\s*/\s*(?P<den>{_NAME})\s+(?P<metric>{_DOTTED})$")
_PLAIN = re.compile(rf"^{_DOTTED}$")
_BASELINE = re.compile(
    r"^baseline(?:\s*(?P<sign>[+-])\s*(?P<pct>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*%)?$"
)
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(?:#.*)?$")
_TABLE_HEADER = re.compile(r"^\s*\[")


class RulesError(ValueError):
    """The rules file is missing, malformed, or asks for something that cannot be checked."""


@dataclass(frozen=True)
class Rule:
    """One check of the rules file.

    `kind`: "bound" (`subject OP number`), "ratio" (`num/den metric OP number`),
    "regression" (`subject OP baseline ± tolerance_pct %`) or "fact" (`subject == true`).
    `subject` is the metric or fact as written (`overlap.gap_p50_us`, `gap_p50_us`,
    `tokens_identical`); for a ratio it is the plain metric and `modes` is (num, den).
    """

    check: str
    kind: RuleKind
    subject: str
    op: str
    target: float | bool | None = None
    tolerance_pct: float | None = None
    modes: tuple[str, str] | None = None
    name: str = ""
    description: str = ""
    line: int | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise RulesError(f"operator {self.op!r} is not one of {', '.join(OPERATORS)}")
        if not _PLAIN.match(self.subject):
            raise RulesError(f"{self.subject!r} is not a metric name")
        if self.kind == "fact":
            if not isinstance(self.target, bool) or self.op not in ("==", "!="):
                raise RulesError("a true/false check takes == or != (`tokens_identical == true`)")
        elif self.kind == "regression":
            if self.op in ("==", "!="):
                raise RulesError("a baseline check needs <=, <, >= or > (which way is worse)")
            if self.tolerance_pct is None or not math.isfinite(self.tolerance_pct):
                raise RulesError("a baseline check needs a finite tolerance")
        elif self.kind in ("bound", "ratio"):
            if isinstance(self.target, bool) or not isinstance(self.target, float):
                raise RulesError(f"a {self.kind} check compares with a number")
            if not math.isfinite(self.target):
                raise RulesError("the threshold must be a finite number")
        else:
            raise RulesError(f"unknown rule kind {self.kind!r}")
        if self.kind == "ratio":
            if self.modes is None or len(self.modes) != 2 or self.modes[0] == self.modes[1]:
                raise RulesError("a ratio compares two different modes (`overlap/sync METRIC`)")
        elif self.modes is not None:
            raise RulesError("only ratio checks name two modes")
        if not self.name:
            object.__setattr__(self, "name", self.check)

    @property
    def lower_is_better(self) -> bool:
        """For a regression check: whether growing is the bad direction."""
        return self.op in ("<=", "<")


@dataclass(frozen=True)
class RuleSet:
    """All rules of one file, with the noise settings regression checks use."""

    rules: tuple[Rule, ...]
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    source: str = "<rules>"

    def __post_init__(self) -> None:
        if not self.rules:
            raise RulesError(f"{self.source}: no [[rule]] tables (see README, 'stepgap gate')")

    @property
    def needs_baseline(self) -> bool:
        return any(r.kind == "regression" for r in self.rules)


def parse_check(check: str, **fields: object) -> Rule:
    """One check expression (`overlap/sync idle_fraction < 1`) as a Rule."""
    match = _CHECK.match(check)
    if not match:
        raise RulesError(
            f"cannot read {check!r}: expected SUBJECT OP TARGET, e.g. 'gap_p50_us <= 30'"
        )
    subject, op, target = match["subject"], match["op"], match["target"]
    op = "==" if op == "=" else op
    baseline = _BASELINE.match(target)
    flag = target.lower() in ("true", "false")
    value: float | bool | None = None
    if flag:
        value = target.lower() == "true"
    elif not baseline:
        value = _number(target, check)
    ratio = _RATIO.match(subject)
    if ratio:
        if baseline:
            raise RulesError(f"{check!r}: a ratio between modes compares with a number")
        modes = (ratio["num"], ratio["den"])
        return Rule(check, "ratio", ratio["metric"], op, value, modes=modes, **fields)  # type: ignore[arg-type]
    if not _PLAIN.match(subject):
        raise RulesError(
            f"cannot read subject {subject!r} in {check!r}: expected METRIC, MODE.METRIC "
            "or MODE/MODE METRIC"
        )
    if baseline:
        pct = float(baseline["pct"] or 0.0) * (-1 if baseline["sign"] == "-" else 1)
        return Rule(check, "regression", subject, op, tolerance_pct=pct, **fields)  # type: ignore[arg-type]
    kind = "fact" if flag else "bound"
    return Rule(check, kind, subject, op, value, **fields)  # type: ignore[arg-type]


def _number(text: str, check: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RulesError(
            f"cannot read target {text!r} in {check!r}: expected a number, true/false, "
            "or baseline [+|- N%]"
        ) from None
    if not math.isfinite(value):
        raise RulesError(f"target {text!r} in {check!r} must be a finite number")
    return value


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RulesError(f"rules file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"cannot read rules file {path}: {error}") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse the text of a rules file; `source` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"{source}: malformed TOML: {error}") from None
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            raise RulesError(
                f"{_where(source, _key_line(text, key))}unknown top-level key {key!r} "
                f"(valid: {', '.join(TOP_LEVEL_KEYS)})"
            )
    tables = document.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        line = _key_line(text, "rule")
        raise RulesError(f"{_where(source, line)}'rule' must be [[rule]] tables")
    headers: list[int | None] = list(_rule_header_lines(text))
    if len(headers) != len(tables):  # e.g. inline `rule = [{...}]`: lines unknown
        headers = [None] * len(tables)
    rules = tuple(
        _rule_from_table(table, index + 1, text, line, source)
        for index, (table, line) in enumerate(zip(tables, headers, strict=True))
    )
    return RuleSet(rules, _noise_settings(document.get("noise", {}), text, source), source)


def _rule_from_table(table: dict, number: int, text: str, header: int | None, source: str) -> Rule:
    def error(message: str, key: str | None = None) -> RulesError:
        line = _key_line(text, key, header) if key and header else header
        return RulesError(f"{_where(source, line)}rule {number}: {message}")

    for key in table:
        if key not in RULE_KEYS:
            raise error(f"unknown key {key!r} (valid: {', '.join(RULE_KEYS)})", key)
    check = table.get("check")
    if not isinstance(check, str) or not check.strip():
        raise error('needs check = "SUBJECT OP TARGET", e.g. check = "gap_p50_us <= 30"')
    for key in ("name", "description"):
        if not isinstance(table.get(key, ""), str):
            raise error(f"{key} must be a string", key)
    line = _key_line(text, "check", header) if header else None
    try:
        return parse_check(
            check.strip(),
            name=table.get("name", ""),
            description=table.get("description", ""),
            line=line,
        )
    except RulesError as problem:
        raise error(str(problem), "check") from None


def _noise_settings(table: object, text: str, source: str) -> NoiseSettings:
    where = _where(source, _key_line(text, "noise"))
    if not isinstance(table, dict):
        raise RulesError(f"{where}[noise] must be a table")
    known = ("confidence", "resamples", "seed")
    for key in table:
        if key not in known:
            raise RulesError(f"{where}[noise]: unknown key {key!r} (valid: {', '.join(known)})")
    try:
        return NoiseSettings(**table)
    except (TypeError, ValueError) as problem:
        raise RulesError(f"{where}[noise]: {problem}") from None


def _where(source: str, line: int | None) -> str:
    return f"{source} line {line}: " if line else f"{source}: "


def _rule_header_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if _RULE_HEADER.match(line)]


def _key_line(text: str, key: str | None, after: int | None = None) -> int | None:
    """The line of `key = ...` (or `[key]`) — within the table starting at `after` if given."""
    if key is None:
        return None
    lines = text.splitlines()
    start = after or 0
    pattern = re.compile(rf"^\s*(?:{re.escape(key)}\s*=|\[+\s*{re.escape(key)}\s*\]+)")
    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1]
        if after and number > after and _TABLE_HEADER.match(line):
            break
        if pattern.match(line):
            return number
    return None
