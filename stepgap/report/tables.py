"""The report's tables and findings: metrics with ratios, token identity, environments,
and what is wrong or unusual about the runs given. Stateless; returns plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stepgap.identity import NEAR_TIE_LOGIT_MARGIN, Identity, run_identity
from stepgap.metric_registry import headline
from stepgap.runs import RunData, mode_order
from stepgap.summary_view import ratio


def ordered_by_mode(runs: list[RunData]) -> list[RunData]:
    """Runs of one group in reading order: sync (the baseline) first, then overlap, then
    any other mode alphabetically."""
    return sorted(runs, key=lambda run: mode_order(run.mode))


def run_labels(runs: list[RunData]) -> list[str]:
    """A distinct display label per run: its name, qualified by its directory when two
    runs share a name."""
    names = [run.name for run in runs]
    labels = []
    for run, name in zip(runs, names, strict=True):
        if names.count(name) > 1 and run.path is not None:
            name = f"{name} ({run.path.parent.name}/{run.path.name})"
        labels.append(name)
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


@dataclass(frozen=True)
class MetricRow:
    """One headline metric: its value per run and each run's ratio to the baseline."""

    key: str
    label: str
    better: str | None
    values: tuple[Any, ...]
    ratios: tuple[float, ...]  # one per run after the baseline


def metric_rows(runs: list[RunData], labels: list[str]) -> list[MetricRow]:
    """The headline metrics (`metric_registry.headline`) with every run's ratio to the
    first run, the baseline."""
    out = []
    for metric in headline():
        values = tuple(run.summary.get(metric.key, math.nan) for run in runs)
        ratios = tuple(ratio(value, values[0]) for value in values[1:])
        out.append(MetricRow(metric.key, metric.label, metric.direction.better, values, ratios))
    return out


@dataclass(frozen=True)
class IdentityRow:
    """Token identity of one run against the baseline (None when either has no tokens)."""

    baseline: str
    other: str
    identity: Identity | None
    note: str


def identity_rows(
    runs: list[RunData], labels: list[str], near_tie: float = NEAR_TIE_LOGIT_MARGIN
) -> list[IdentityRow]:
    """Every run after the first compared token for token with the first."""
    base, base_label = runs[0], labels[0]
    out = []
    for run, label in zip(runs[1:], labels[1:], strict=True):
        missing = [lab for r, lab in ((base, base_label), (run, label)) if not r.tokens]
        if missing:
            note = f"no token ids recorded for {', '.join(missing)}; identity not checked"
            out.append(IdentityRow(base_label, label, None, note))
            continue
        identity = run_identity(base, run, near_tie)
        out.append(IdentityRow(base_label, label, identity, identity.describe()))
    return out


def environment_rows(run: RunData) -> list[tuple[str, str]]:
    """Where and how a run was made, as (field, value) pairs; absent fields are left out."""
    env = run.meta.get("environment", {}) or {}
    device = env.get("device", {}) or {}
    workload = run.meta.get("workload", {}) or {}
    config = run.meta.get("config", {}) or {}
    traced = str(run.meta.get("source", "")).startswith("trace")  # from `stepgap analyze`
    notes = run.meta.get("notes") or []
    fields = [
        ("mode", run.mode),
        ("source", run.meta.get("source")),
        ("complete", "yes" if run.complete else f"NO ({run.meta.get('incomplete_reason')})"),
        ("workload", workload.get("label")),
        ("model", workload.get("model")),
        ("tensor parallel", _tensor_parallel(config)),
        ("device", " / ".join(str(v) for v in (device.get("kind"), device.get("name")) if v)),
        ("driver", env.get("driver")),
        ("CUDA", env.get("cuda")),
        ("torch", env.get("torch")),
        ("Python", env.get("python")),
        ("git revision", env.get("git_revision")),
        ("host", env.get("host")),
        ("steps from", config.get("step_source") if traced else None),
        ("analysis notes", "; ".join(map(str, notes)) if traced and notes else None),
        ("started", run.meta.get("started")),
        ("directory", str(run.path) if run.path else None),
        ("command", env.get("command")),
    ]
    return [(name, str(value)) for name, value in fields if value not in (None, "")]


def _tensor_parallel(config: dict) -> str | None:
    """A tensor-parallel engine run's size ("4 ranks"); None at TP 1."""
    size = config.get("tensor_parallel")
    return f"{size} ranks" if isinstance(size, int) and size > 1 else None


def workload_label(run: RunData) -> str:
    return str((run.meta.get("workload", {}) or {}).get("label") or "unknown workload")


def run_warnings(runs: list[RunData], labels: list[str]) -> list[str]:
    """What a reader must know before trusting a comparison: incomplete runs, different
    workloads or devices."""
    warnings = []
    for run, label in zip(runs, labels, strict=True):
        if not run.complete:
            reason = run.meta.get("incomplete_reason", "reason not recorded")
            warnings.append(f"{label} is incomplete ({reason}): its numbers cover part of a run")
    workloads = {label: workload_label(run) for run, label in zip(runs, labels, strict=True)}
    if len(set(workloads.values())) > 1:
        listed = ", ".join(f"{label}: {w}" for label, w in workloads.items())
        warnings.append(
            f"these runs are of different workloads ({listed}); ratios compare unlike things"
        )
    devices = {str(run.meta.get("environment", {}).get("device", {}).get("name")) for run in runs}
    if len(devices) > 1:
        warnings.append(f"these runs are on different devices ({', '.join(sorted(devices))})")
    return warnings
