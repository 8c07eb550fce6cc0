"""`GET /metrics`: the live figures in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from stepgap.serve.stats import Snapshot, Summary

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("length", "eos", "stop_token", "abort", "failed", "rejected")


def render(snap: Snapshot, labels: dict[str, str]) -> str:
    base = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "".join(f"{line}\n" for line in _lines(snap, base))


def _lines(snap: Snapshot, base: str) -> Iterator[str]:
    yield from _gauge(
        "num_requests_running", "Requests holding an engine slot.", snap.running, base
    )
    yield from _gauge("num_requests_waiting", "Requests queued for a slot.", snap.waiting, base)
    yield from _gauge(
        "num_open_requests", "HTTP requests not answered yet.", snap.open_requests, base
    )
    yield from _gauge(
        "engine_healthy", "1 while the engine thread serves.", int(snap.healthy), base
    )
    yield from _counter("engine_steps_total", "Engine steps completed.", snap.steps, base)
    yield from _counter("generation_tokens_total", "Tokens sent to clients.", snap.tokens, base)
    yield from _outcomes(snap, base)
    yield from _figure(
        "host_step_time_ms", "Host loop wall time per step (hostStepTimeMS).", snap.host_ms, base
    )
    yield from _figure(
        "device_step_time_ms",
        "Device time of the completed step (prevDeviceStepTimeMS).",
        snap.device_ms,
        base,
    )
    yield from _figure("step_gap_ms", "Device idle before the completed step.", snap.gap_ms, base)
    yield from _gauge(
        "idle_fraction", "Device idle share of the last 1024 steps.", snap.idle_fraction, base
    )


def _head(name: str, help_text: str, kind: str) -> Iterator[str]:
    yield f"# HELP stepgap_{name} {help_text}"
    yield f"# TYPE stepgap_{name} {kind}"


def _gauge(name: str, help_text: str, value: float, labels: str) -> Iterator[str]:
    """A gauge; no sample while it has no value (NaN), as scrapers drop those anyway."""
    yield from _head(name, help_text, "gauge")
    if not (isinstance(value, float) and math.isnan(value)):
        yield f"stepgap_{name}{{{labels}}} {_number(value)}"


def _counter(name: str, help_text: str, value: float, labels: str) -> Iterator[str]:
    yield from _head(name, help_text, "counter")
    yield f"stepgap_{name}{{{labels}}} {_number(value)}"


def _outcomes(snap: Snapshot, labels: str) -> Iterator[str]:
    yield from _head("requests_total", "Requests by how they ended.", "counter")
    for outcome in OUTCOMES:
        value = snap.outcomes.get(outcome, 0)
        yield f'stepgap_requests_total{{{labels},outcome="{outcome}"}} {value}'


def _figure(name: str, help_text: str, figure: Summary, labels: str) -> Iterator[str]:
    """A step figure: its histogram since the start, its quantiles over the last 1024
    steps (a gauge per quantile), and its latest value."""
    yield from _head(name, help_text, "histogram")
    for bound, count in figure.buckets.items():
        yield f'stepgap_{name}_bucket{{{labels},le="{bound}"}} {count}'
    yield f'stepgap_{name}_bucket{{{labels},le="+Inf"}} {figure.count}'
    yield f"stepgap_{name}_sum{{{labels}}} {_number(figure.total)}"
    yield f"stepgap_{name}_count{{{labels}}} {figure.count}"
    recent = [(q, v) for q, v in figure.quantiles.items() if not math.isnan(v)]
    yield from _head(f"recent_{name}", f"{help_text} Quantiles of the last 1024 steps.", "gauge")
    for q, value in recent:
        yield f'stepgap_recent_{name}{{{labels},quantile="{q}"}} {_number(value)}'
    yield from _gauge(f"last_{name}", f"{help_text} The latest step.", figure.last, labels)


def _number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)
