"""The report's first screen: what was run, and the answer — did overlap remove the gaps,
what did that buy, is the gain out of the runs' noise, and are the tokens the same."""

from __future__ import annotations

from collections.abc import Sequence

from stepgap.identity import Identity, run_identity
from stepgap.report import html
from stepgap.report.tables import IdentityRow
from stepgap.runs import RunData
from stepgap.summary_view import MetricRatio, compare_metrics
from stepgap.workloads import sentence

# the answer's figures, in the order it states them
ANSWER_KEYS = ("gap_p50_us", "idle_fraction", "output_throughput", "median_tpot_ms")


def headline_section(
    labelled: list[tuple[str, RunData]],
    baseline_ratios: dict[str, MetricRatio] | None = None,
    identities: Sequence[IdentityRow] = (),
) -> str:
    """The workload in a sentence and, with two or more runs, the answer for the pair the
    report is about (sync then overlap where both are present, else the first and last).
    What the report already computed against its first run (`baseline_ratios` of a
    two-run report, `identities`) is reused when the pair starts from that run."""
    parts = [html.paragraph(_workload(run)) for run in _distinct_workloads(labelled)]
    pair = answer_pair(labelled)
    if pair is not None:
        (label_a, a), (label_b, b) = pair
        from_baseline = a is labelled[0][1]
        rows = baseline_ratios if from_baseline and baseline_ratios else None
        if rows is None:
            rows = {row.metric.key: row for row in compare_metrics(a, b)}
        known = [row for row in identities if from_baseline and row.other == label_b]
        same = known[0] if known else _identity_row(label_a, label_b, run_identity(a, b))
        parts.append(html.paragraph(answer(label_a, label_b, rows, same)))
    return html.section("At a glance", "".join(parts), "headline")


def answer_pair(
    labelled: list[tuple[str, RunData]],
) -> tuple[tuple[str, RunData], tuple[str, RunData]] | None:
    """(baseline, candidate): the sync and overlap runs when there is one of each."""
    if len(labelled) < 2:
        return None
    by_mode = {run.mode: (label, run) for label, run in labelled}
    if len(labelled) == 2 and {"sync", "overlap"} <= set(by_mode):
        return by_mode["sync"], by_mode["overlap"]
    return labelled[0], labelled[-1]


def answer(label_a: str, label_b: str, rows: dict[str, MetricRatio], same: IdentityRow) -> str:
    """'overlap vs sync: decode gap p50 540 → 3.1 µs, ...; tokens identical.'"""
    figures = [_figure(rows[key]) for key in ANSWER_KEYS if key in rows]
    stated = "; ".join(figure for figure in figures if figure)
    return f"{label_b} vs {label_a}: {stated or 'no figures to compare'}; {_tokens(same)}."


def _figure(row: MetricRatio) -> str:
    if row.a is None or row.b is None:
        return ""
    name = row.metric.label.split(" (")[0]
    change = f"{name} {_value(row.a)} → {_value(row.b)}"
    if row.metric.unit:
        change += f" {row.metric.unit}"
    if row.ratio == row.ratio:  # not NaN
        change += f" (×{row.ratio:.3f}"
        change += f", 95% noise {row.noise.describe()}" if row.noise else ""
        change += f", {row.reading})" if row.reading else ")"
    return change


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _identity_row(label_a: str, label_b: str, identity: Identity) -> IdentityRow:
    return IdentityRow(label_a, label_b, identity, identity.describe())


def _tokens(row: IdentityRow) -> str:
    same = row.identity
    if same is None:  # no token ids recorded
        return row.note
    if same.identical:
        return f"tokens identical over {same.requests_compared} requests"
    if same.first is None:
        return "the runs hold different requests"
    return (
        f"tokens differ in {same.requests_differing} of {same.requests_compared} requests "
        f"(first: request {same.first.request_id} at position {same.first.position}, "
        f"{same.first.verdict})"
    )


def _workload(run: RunData) -> str:
    described = run.meta.get("workload") or {}
    if not isinstance(described, dict) or not described:
        return f"{run.meta.get('name', 'a run')}: no workload recorded (an analysed trace)."
    config = run.meta.get("config") or {}
    tensor_parallel = int(config.get("tensor_parallel") or 1) if isinstance(config, dict) else 1
    warmup = config.get("warmup_steps") if isinstance(config, dict) else None
    text = sentence(described, tensor_parallel)
    return text + (f"; the first {warmup} decode steps are warm-up" if warmup else "") + "."


def _distinct_workloads(labelled: list[tuple[str, RunData]]) -> list[RunData]:
    seen: dict[str, RunData] = {}
    for _, run in labelled:
        seen.setdefault(str(run.meta.get("workload")), run)
    return list(seen.values())
