"""Run-to-run spread of a summary metric, from the samples the metric is computed from.

A summary metric such as `gap_p50_us` is a statistic (here the median) of samples (here the
per-step gaps of decode steps after warm-up). Resampling those samples with replacement
(the bootstrap) shows how much the statistic would move on a rerun of the same workload;
comparing a run with a baseline this way gives an interval for the relative change. A
fixed seed makes every interval deterministic, so a gate gives the same verdict twice.

Which samples stand behind which metric is `stepgap.metric_registry`'s `Metric.noise`:
per-step gaps for `gap_*_us`, per-request TTFT, TPOT, E2E latency and decode speed
(requests.csv), inter-token latencies (token times in tokens.jsonl). Totals, maxima and the
idle fraction have none; throughput has proxy samples only (the decode steps' token rate),
which `stepgap run` and `compare` use for their ratios' noise and a gate does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stepgap import metric_registry as registry
from stepgap.metric_registry import Samples
from stepgap.metric_registry import Statistic as StatisticKind
from stepgap.metrics import DEFAULT_WARMUP_STEPS, gap_sample, itl_samples_ms
from stepgap.rank_metrics import rank_gap_samples, rank_tables, split_key
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


def _rate(values: np.ndarray) -> np.ndarray:
    """Σ tokens / Σ periods of (tokens, period) rows: a token rate, per resample."""
    return values[..., 0].sum(axis=-1) / values[..., 1].sum(axis=-1)


STATISTICS: dict[StatisticKind, Statistic] = {
    StatisticKind.MEDIAN: lambda values: np.median(values, axis=-1),
    StatisticKind.P90: _percentile(90),
    StatisticKind.P99: _percentile(99),
    StatisticKind.MEAN: lambda values: np.mean(values, axis=-1),
    StatisticKind.STD: lambda values: np.std(values, axis=-1),
    StatisticKind.RATE: _rate,
}


def _request_column(column: str) -> Callable[[RunData], np.ndarray]:
    def values(run: RunData) -> np.ndarray:
        if column not in run.requests:
            return np.array([])
        return run.requests[column].to_numpy(dtype=float)

    return values


def _warmup(run: RunData) -> int:
    return int(run.summary.get("warmup_steps", DEFAULT_WARMUP_STEPS) or 0)


def _gaps(run: RunData) -> np.ndarray:
    return gap_sample(run.steps, _warmup(run)).to_numpy(dtype=float)


def _step_rates(run: RunData) -> np.ndarray:
    """(tokens, device period µs) per decode step after warm-up, the gap before it included:
    the steps' token rate is what decode throughput is made of."""
    if "batch_size" not in run.steps.columns:
        return np.empty((0, 2))
    gaps = gap_sample(run.steps, _warmup(run))
    steps = run.steps.loc[gaps.index]
    periods = steps.busy_us.to_numpy(dtype=float) + gaps.to_numpy(dtype=float)
    return np.column_stack([steps.batch_size.to_numpy(dtype=float), periods])


# Where each kind of sample comes from (metrics.summarize computes from the same).
SAMPLE_SOURCES: dict[Samples, Callable[[RunData], np.ndarray]] = {
    Samples.GAPS: _gaps,
    Samples.TPOT: _request_column("tpot_ms"),
    Samples.TTFT: _request_column("ttft_ms"),
    Samples.E2EL: _request_column("e2e_ms"),
    Samples.DECODE_SPEED: _request_column("decode_speed_tok_s"),
    Samples.ITL: lambda run: itl_samples_ms(run.token_times),
    Samples.STEP_RATE: _step_rates,
}


def metric_samples(run: RunData, metric: str, proxies: bool = False) -> MetricSamples | None:
    """The samples behind `metric` in `run` (stepgap.metric_registry says which), or None
    when it has none. Proxy samples (the step rate behind throughput) only with `proxies`:
    a gate judges a metric only by samples whose statistic is that metric."""
    view = split_key(metric)
    registered = registry.metric(view[1] if view else metric)
    if registered is None or registered.noise is None:
        return None
    noise = registered.noise
    if not noise.exact and not proxies:
        return None
    if view is not None:  # a tensor-parallel rank's gaps (or the slowest rank's per step)
        if noise.samples is not Samples.GAPS:
            return None
        values = rank_gap_samples(rank_tables(run), view[0], _warmup(run))
    else:
        values = SAMPLE_SOURCES[noise.samples](run)
    missing = np.isnan(values) if values.ndim == 1 else np.isnan(values).any(axis=1)
    values = values[~missing]
    statistic = STATISTICS[noise.statistic]
    return MetricSamples(metric, values, noise.statistic.value, statistic)


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
