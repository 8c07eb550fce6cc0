"""Noise intervals of ratios between two runs (overlap/sync in `stepgap run`, B/A in
`compare`): how far the ratio could move on a rerun, from the runs' own samples.

Each run's samples (per-step gaps, per-request latencies, the decode steps' token rate;
`stepgap.metric_registry` says which metric uses which) are resampled with replacement, the
metric recomputed per resample, and the ratio's percentile interval taken — the bootstrap of
`stepgap.gate.noise`, with a fixed seed so a run always shows the same interval. A ratio
whose interval holds 1 is *within noise*: these runs cannot tell the two apart.

Throughput has no per-request samples; its interval is the relative spread of the decode
steps' token rate (Σ tokens / Σ device period), centred on the measured ratio, with the
steps resampled in contiguous blocks so that a stretch of the run slowed by something else
widens it. Like the gate's, these intervals see noise within a run, not a shift of a whole
run (another process taking the CPU from its first step to its last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stepgap import metric_registry as registry
from stepgap.gate.noise import NoiseSettings, Statistic, bootstrap, metric_samples
from stepgap.metric_registry import Samples
from stepgap.metric_registry import Statistic as StatisticKind
from stepgap.runs import RunData

DISPLAY_RESAMPLES = 1000
IN_TIME_ORDER = (Samples.STEP_RATE,)  # resampled in blocks (see block_bootstrap)
TAILS = {StatisticKind.P90: 0.1, StatisticKind.P99: 0.01}  # share of samples beyond
MIN_TAIL_SAMPLES = 5
NOISE_NOTE = (
    "95% noise: bootstrap interval of the ratio from each run's own samples (per-step gaps, "
    "per-request latencies; * throughput: the decode steps' token rate); a ratio whose "
    "interval holds 1 is within noise. It cannot see a slowdown of a whole run."
)


@dataclass(frozen=True)
class RatioInterval:
    """Bootstrap interval [low, high] of a B/A ratio at `confidence`."""

    low: float
    high: float
    confidence: float
    proxy: bool  # from proxy samples (throughput: the decode steps' token rate)

    @property
    def within_noise(self) -> bool:
        return self.low <= 1.0 <= self.high

    def describe(self, mark_proxy: bool = False) -> str:
        """'[low, high]'; with `mark_proxy`, a ' *' after an interval of proxy samples."""
        return f"[{self.low:.3f}, {self.high:.3f}]" + (" *" if mark_proxy and self.proxy else "")

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "within_noise": self.within_noise,
            "proxy": self.proxy,
        }


def ratio_interval(
    a: RunData, b: RunData, metric: str, ratio: float, settings: NoiseSettings | None = None
) -> RatioInterval | None:
    """The interval of `ratio` = metric(b) / metric(a); None without samples in both runs."""
    settings = settings or NoiseSettings(resamples=DISPLAY_RESAMPLES)
    samples_a, samples_b = metric_samples(a, metric, True), metric_samples(b, metric, True)
    if samples_a is None or samples_b is None or not math.isfinite(ratio):
        return None
    registered = registry.metric(metric)
    assert registered is not None and registered.noise is not None
    needed = min_samples(registered.noise.statistic)
    if min(len(samples_a.values), len(samples_b.values)) < needed:
        return None
    resample = block_bootstrap if registered.noise.samples in IN_TIME_ORDER else bootstrap
    rng = np.random.default_rng(settings.seed)
    replicate_a = resample(samples_a.values, samples_a.statistic, settings, rng)
    replicate_b = resample(samples_b.values, samples_b.statistic, settings, rng)
    point = float(samples_b.statistic(samples_b.values) / samples_a.statistic(samples_a.values))
    if np.any(replicate_a == 0) or not math.isfinite(point) or point == 0:
        return None
    relative = replicate_b / replicate_a / point  # 1.0 = the measured ratio
    tail = (1.0 - settings.confidence) / 2.0 * 100.0
    low, high = np.percentile(relative, [tail, 100.0 - tail]) * ratio
    return RatioInterval(float(low), float(high), settings.confidence, not registered.noise.exact)


def min_samples(statistic: StatisticKind) -> int:
    """Samples a run needs for a trustworthy interval of `statistic`: a tail quantile needs
    some samples beyond it (five), or every resample repeats the same few extreme values and
    the interval collapses to a point (p99 of 128 requests: [0.571, 0.571])."""
    tail = TAILS.get(statistic)
    return 2 if tail is None else math.ceil(MIN_TAIL_SAMPLES / tail)


def block_bootstrap(
    values: np.ndarray, statistic: Statistic, settings: NoiseSettings, rng: np.random.Generator
) -> np.ndarray:
    """Replicates of `statistic` over resamples made of contiguous blocks of the samples
    (a moving-block bootstrap, blocks of about sqrt(n)): samples in time order — the decode
    steps' rates — drift together when something else takes the CPU for a while, and only
    resampling whole stretches of the run shows that spread."""
    n = len(values)
    length = max(1, math.isqrt(n))
    blocks = -(-n // length)
    starts = rng.integers(0, n - length + 1, size=(settings.resamples, blocks, 1))
    indices = (starts + np.arange(length)).reshape(settings.resamples, -1)[:, :n]
    return statistic(values[indices])
