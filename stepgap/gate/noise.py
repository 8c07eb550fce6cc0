"""Run-to-run spread of a summary metric, from the samples the metric is computed from.

A summary metric such as `gap_p50_us` is a statistic (here the median) of samples (here the
per-step gaps of decode steps after warm-up). Resampling those samples with replacement
(the bootstrap) shows how much the statistic would move on a rerun of the same workload;
comparing a run with a baseline this way gives an interval for the relative change. A
fixed seed makes every interval deterministic, so a gate gives the same verdict twice.

Metrics with per-sample data: `gap_*_us` (steps.csv gap_before_us, via
`stepgap.metrics.gap_sample`), `tpot_*_ms`, `ttft_*_ms`, `e2e_p50_ms` and
`decode_speed_tok_s` (requests.csv), `itl_*_ms` (token_times in tokens.jsonl). Totals and
whole-run ratios (throughput, idle fraction, wall time, maxima) have none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stepgap.metrics import DEFAULT_WARMUP_STEPS, gap_sample, itl_samples_ms
from stepgap.runs import RunData

Statistic = Callable[[np.ndarray], np.ndarray]  # reduces the last axis
# Bound the memory of one bootstrap chunk: resamples x samples int64 indices.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class NoiseSettings:
    """How regression checks estimate noise: bootstrap confidence, resamples, RNG seed."""

    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)):
            raise ValueError("confidence must be a number")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int):
            raise ValueError("resamples must be an integer")
        if not 100 <= self.resamples <= 100_000:
            raise ValueError(f"resamples must be in [100, 100000], got {self.resamples}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError("seed must be a non-negative integer")


@dataclass(frozen=True)
class MetricSamples:
    """The samples a summary metric is a statistic of, and that statistic."""

    metric: str
    values: np.ndarray
    statistic_name: str  # "median", "p90", "p99" or "mean"
    statistic: Statistic


@dataclass(frozen=True)
class ChangeInterval:
    """Bootstrap interval of the relative change current/baseline - 1, in percent."""

    low_pct: float
    high_pct: float
    confidence: float
    baseline_samples: int
    current_samples: int
    statistic: str

    def excludes_zero(self, growing_is_worse: bool) -> bool:
        """Whether the whole interval lies on the bad side of no change."""
        return self.low_pct > 0 if growing_is_worse else self.high_pct < 0

    def describe(self) -> str:
        return f"[{self.low_pct:+.1f}%, {self.high_pct:+.1f}%]"

    def to_dict(self) -> dict:
        return {
            "low_pct": self.low_pct,
            "high_pct": self.high_pct,
            "confidence": self.confidence,
            "baseline_samples": self.baseline_samples,
            "current_samples": self.current_samples,
            "statistic": self.statistic,
        }


def _percentile(q: float) -> Statistic:
    return lambda values: np.percentile(values, q, axis=-1)


STATISTICS: dict[str, Statistic] = {
    "p50": lambda values: np.median(values, axis=-1),
    "p90": _percentile(90),
    "p99": _percentile(99),
    "mean": lambda values: np.mean(values, axis=-1),
}
STATISTIC_NAMES = {"p50": "median", "p90": "p90", "p99": "p99", "mean": "mean"}


def _request_column(column: str) -> Callable[[RunData], np.ndarray]:
    def values(run: RunData) -> np.ndarray:
        if column not in run.requests:
            return np.array([])
        return run.requests[column].to_numpy(dtype=float)

    return values


def _gaps(run: RunData) -> np.ndarray:
    warmup = int(run.summary.get("warmup_steps", DEFAULT_WARMUP_STEPS))
    return gap_sample(run.steps, warmup).to_numpy(dtype=float)


# Metric family -> where its samples come from (metrics.summarize computes from the same).
SAMPLE_SOURCES: dict[str, Callable[[RunData], np.ndarray]] = {
    "gap": _gaps,
    "tpot": _request_column("tpot_ms"),
    "ttft": _request_column("ttft_ms"),
    "e2e": _request_column("e2e_ms"),
    "itl": lambda run: itl_samples_ms(run.token_times),
}
_FAMILY_METRIC = re.compile(r"^(?P<family>[a-z0-9]+)_(?P<stat>p50|p90|p99|mean)_(?:us|ms)$")
_WHOLE_METRICS = {"decode_speed_tok_s": (_request_column("decode_speed_tok_s"), "mean")}


def metric_samples(run: RunData, metric: str) -> MetricSamples | None:
    """The samples behind `metric` in `run`, or None when the metric has no per-sample data."""
    match = _FAMILY_METRIC.match(metric)
    if match and match["family"] in SAMPLE_SOURCES:
        source, stat = SAMPLE_SOURCES[match["family"]], match["stat"]
    elif metric in _WHOLE_METRICS:
        source, stat = _WHOLE_METRICS[metric]
    else:
        return None
    values = source(run)
    values = values[~np.isnan(values)]
    return MetricSamples(metric, values, STATISTIC_NAMES[stat], STATISTICS[stat])


def bootstrap(
    values: np.ndarray, statistic: Statistic, settings: NoiseSettings, rng: np.random.Generator
) -> np.ndarray:
    """`settings.resamples` bootstrap replicates of `statistic(values)`."""
    n = len(values)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    replicates = []
    for start in range(0, settings.resamples, per_chunk):
        count = min(per_chunk, settings.resamples - start)
        replicates.append(statistic(values[rng.integers(0, n, size=(count, n))]))
    return np.concatenate(replicates)


def statistic_interval(samples: MetricSamples, settings: NoiseSettings) -> tuple[float, float]:
    """Bootstrap interval of the statistic itself (e.g. of the median gap) for one run."""
    if len(samples.values) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(settings.seed)
    replicates = bootstrap(samples.values, samples.statistic, settings, rng)
    return _interval(replicates, settings.confidence)


def change_interval(
    baseline: MetricSamples, current: MetricSamples, settings: NoiseSettings
) -> ChangeInterval | None:
    """Bootstrap interval of current/baseline - 1 (percent), each run resampled on its own.

    None when either run has fewer than two samples or the baseline statistic can be zero,
    i.e. when there is no usable estimate of the noise.
    """
    if len(baseline.values) < 2 or len(current.values) < 2:
        return None
    rng = np.random.default_rng(settings.seed)
    base = bootstrap(baseline.values, baseline.statistic, settings, rng)
    cur = bootstrap(current.values, current.statistic, settings, rng)
    if np.any(base == 0):
        return None
    low, high = _interval((cur / base - 1.0) * 100.0, settings.confidence)
    return ChangeInterval(
        low,
        high,
        settings.confidence,
        len(baseline.values),
        len(current.values),
        current.statistic_name,
    )


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return float(low), float(high)
