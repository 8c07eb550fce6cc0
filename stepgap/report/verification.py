"""The report's view of `stepgap verify` verdicts (schema `stepgap-verify/1`, documented in
stepgap.verify.verdict): the overall verdict, one row per check, one row per planted fault.
Stateless; returns plain data, and a VerdictError for a verdict it cannot read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepgap.verify.checks import Finding, ValueAt
from stepgap.verify.verdict import VerdictError, load_verdict


@dataclass(frozen=True)
class CheckRow:
    """One invariant check over every run of the verdict."""

    name: str
    description: str
    runs: int
    runs_failed: int
    first: str  # where it first failed ("overlap run, request 3, position 5, step 12"), or ""
    diagnosis: str


@dataclass(frozen=True)
class FaultRow:
    """One planted fault of an `--all-faults` verdict: caught in how many runs, by which check."""

    fault: str
    race: bool
    change: str
    caught: bool
    caught_by_level: tuple[str, ...]  # "caught/runs" per jitter level, in `levels` order
    first_checks: str  # "identical_tokens (2), positions (1)", over every level


@dataclass(frozen=True)
class FirstFailure:
    """The first failing run's first finding, with both schedules' values."""

    check: str
    where: str
    case: str
    values: tuple[tuple[str, str], ...]  # (schedule or "stop-free reference", what it emitted)
    diagnosis: str


@dataclass(frozen=True)
class VerdictView:
    """What the report shows of one verdict file."""

    label: str
    passed: bool
    summary: str
    settings: tuple[tuple[str, str], ...]  # (field, value): what was verified, where
    checks: tuple[CheckRow, ...]
    first_failure: FirstFailure | None
    levels: tuple[str, ...]  # jitter levels of the fault table
    faults: tuple[FaultRow, ...] | None  # None: not an --all-faults verdict


def read_verdict_view(path: str | Path) -> VerdictView:
    """Load a verdict file for the report; VerdictError when it is not one it can show."""
    return verdict_view(load_verdict(Path(path)), str(path))


def verdict_view(verdict: dict[str, Any], label: str) -> VerdictView:
    """The report's view of a loaded verdict; VerdictError (naming `label`) when its parts
    are not what the schema says."""
    try:
        return VerdictView(
            label,
            verdict["passed"],
            str(verdict.get("summary") or ""),
            _settings(verdict),
            _check_rows(_mapping(verdict, "checks")),
            _first_failure(verdict.get("first_failure")),
            *_fault_rows(verdict.get("faults")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise VerdictError(f"{label}: malformed verdict ({detail})") from None


def _mapping(data: Any, key: str) -> dict[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} is not an object")
    return value


def _count(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{key!r} is not a count")
    return value


def _settings(verdict: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    config = verdict.get("config") or {}
    environment = verdict.get("environment") or {}
    device = environment.get("device") or {}
    seeds = [str(s) for s in config.get("seeds") or []]
    fields = [
        ("planted fault", verdict.get("fault")),
        ("runs", f"{verdict.get('runs')} ({verdict.get('runs_failed')} failed)"),
        ("model families", ", ".join(config.get("families") or [])),
        ("workloads", ", ".join(config.get("workloads") or [])),
        ("seeds", f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else "".join(seeds)),
        ("jitter", config.get("jitter")),
        ("device", " / ".join(str(v) for v in (device.get("kind"), device.get("name")) if v)),
        ("CUDA graphs", config.get("cuda_graphs") if device.get("kind") == "cuda" else None),
        ("top-2 margin tolerance", config.get("margin_tolerance")),
        ("wall time", f"{verdict['wall_s']:.1f} s" if verdict.get("wall_s") else None),
        ("git revision", environment.get("git_revision")),
        ("command", environment.get("command")),
    ]
    return tuple((name, str(value)) for name, value in fields if value not in (None, ""))


def _value(data: dict[str, Any] | None) -> ValueAt | None:
    return None if data is None else ValueAt(data["token"], data["margin"], data["step"])


def _finding(data: dict[str, Any]) -> Finding:
    """A verdict's FINDING back as a Finding, to describe it as `stepgap verify` does."""
    return Finding(
        str(data["check"]),
        str(data["mode"]),
        data.get("request_id"),
        data.get("position"),
        data.get("step"),
        _value(data.get("sync")),
        _value(data.get("overlap")),
        data.get("reference_token"),
        str(data.get("diagnosis") or ""),
    )


def _check_rows(checks: dict[str, Any]) -> tuple[CheckRow, ...]:
    rows = []
    for name, check in checks.items():
        first = _finding(check["first"]) if check.get("first") else None
        rows.append(
            CheckRow(
                name,
                str(check.get("description") or ""),
                _count(check, "runs"),
                _count(check, "runs_failed"),
                first.where() if first else "",
                first.diagnosis if first else "",
            )
        )
    return tuple(rows)


def _case_label(case: dict[str, Any] | None) -> str:
    if not case:
        return ""
    label = f"{case.get('family')}/{case.get('workload')}/seed {case.get('seed')}"
    if case.get("jitter_seed") is not None:
        label += f", jitter seed {case['jitter_seed']}"
    if case.get("fault"):
        label += f", fault {case['fault']}"
    return label


def _first_failure(data: dict[str, Any] | None) -> FirstFailure | None:
    if not data:
        return None
    finding = _finding(data)
    schedules = (("sync", finding.sync), ("overlap", finding.overlap))
    values = [(mode, value.describe()) for mode, value in schedules if value is not None]
    if finding.reference_token is not None:
        values.append(("stop-free reference", f"token {finding.reference_token}"))
    return FirstFailure(
        finding.check,
        finding.where(),
        _case_label(data.get("case")),
        tuple(values),
        finding.diagnosis,
    )


def _fault_rows(
    faults: dict[str, Any] | None,
) -> tuple[tuple[str, ...], tuple[FaultRow, ...] | None]:
    if not faults:
        return (), None
    levels = tuple(str(level) for level in faults["jitter_levels"])
    rows = []
    for fault, row in _mapping(faults, "by_fault").items():
        by_level = _mapping(row, "jitter")
        first_checks: Counter[str] = Counter()
        caught = []
        for level in levels:
            at_level = by_level.get(level)
            if at_level is None:
                caught.append("—")
                continue
            caught.append(f"{_count(at_level, 'caught')}/{_count(at_level, 'runs')}")
            first_checks.update({str(k): int(v) for k, v in at_level["first_checks"].items()})
        first = ", ".join(f"{name} ({n})" for name, n in first_checks.most_common())
        rows.append(
            FaultRow(
                fault,
                bool(row.get("race")),
                str(row.get("change") or ""),
                bool(row["caught"]),
                tuple(caught),
                first,
            )
        )
    return levels, tuple(rows)
