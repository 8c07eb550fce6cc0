"""Every summary metric, defined once: its key, unit, direction, label and noise samples.

The CLI tables, the JSON output, `compare`, the gate and the report read metrics from here;
adding a metric is one entry below (and its computation in `stepgap.metrics.summarize`).

Keys follow `vllm bench serve` (`{mean,median,std,p90,p99}_{ttft,tpot,itl,e2el}_ms`,
`request_throughput`, `request_goodput`, `output_throughput`, `total_token_throughput`),
FastDeploy's decode speed (`{mean,median,std,p90,p99}_s_decode`, tokens/s per request),
and stepgap's own gap fields (`gap_p50_us`, `idle_fraction`, ...). Summaries of schema 1
used other names; `LEGACY_KEYS` maps them to these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Direction(Enum):
    """Which way a metric improves (for reading ratios and verdicts)."""

    LOWER = "lower"
    HIGHER = "higher"
    NEUTRAL = "neutral"

    @property
    def better(self) -> str | None:
        """ "lower", "higher" or None, as the report's tables read it."""
        return None if self is Direction.NEUTRAL else self.value


class Samples(Enum):
    """Where the samples behind a metric come from (the bootstrap resamples these)."""

    GAPS = "steps.csv gap_before_us, decode steps after warm-up"
    TTFT = "requests.csv ttft_ms"
    TPOT = "requests.csv tpot_ms"
    E2EL = "requests.csv e2e_ms"
    DECODE_SPEED = "requests.csv decode_speed_tok_s"
    ITL = "tokens.jsonl token times"
    STEP_RATE = "steps.csv decode steps after warm-up: tokens and device period"


class Statistic(Enum):
    """What a metric computes from its samples."""

    MEAN = "mean"
    MEDIAN = "median"
    STD = "std"
    P90 = "p90"
    P99 = "p99"
    RATE = "sum of tokens / sum of periods"


@dataclass(frozen=True)
class Noise:
    """The samples a metric's noise interval comes from. `exact`: the statistic of the
    samples is the summary value itself; otherwise they are a proxy whose relative spread
    stands for the metric's (throughput: the decode steps' token rate)."""

    samples: Samples
    statistic: Statistic
    exact: bool = True


@dataclass(frozen=True)
class Metric:
    """One summary metric."""

    key: str
    label: str
    unit: str
    direction: Direction
    noise: Noise | None = None
    headline: bool = False  # a row of the `run` / `compare` table and the report
    legacy: tuple[str, ...] = ()  # its names in schema-1 summaries

    def __post_init__(self) -> None:
        if not self.key.isidentifier():
            raise ValueError(f"metric key {self.key!r} must be an identifier")
        if self.noise is not None and not isinstance(self.noise, Noise):
            raise TypeError(f"{self.key}: noise must be a Noise")


LOWER, HIGHER, NEUTRAL = Direction.LOWER, Direction.HIGHER, Direction.NEUTRAL
_LATENCY_STATS = (
    ("mean", Statistic.MEAN, "mean"),
    ("median", Statistic.MEDIAN, "p50"),
    ("std", Statistic.STD, None),
    ("p90", Statistic.P90, "p90"),
    ("p99", Statistic.P99, "p99"),
)
_HEADLINE_STATS = {
    "ttft": ("median", "p99"),
    "tpot": ("mean", "median", "p99"),
    "itl": ("median", "p99"),
    "e2el": ("median", "p99"),
}


def _latency(name: str, label: str, samples: Samples, old: str | None) -> list[Metric]:
    """vLLM's five statistics of one per-request (or per-token) latency, in ms."""
    metrics = []
    for prefix, statistic, old_stat in _LATENCY_STATS:
        legacy = (f"{old}_{old_stat}_ms",) if old and old_stat else ()
        if name == "e2el" and prefix != "median":
            legacy = ()
        metrics.append(
            Metric(
                f"{prefix}_{name}_ms",
                f"{label} {prefix} (ms)",
                "ms",
                LOWER,
                Noise(samples, statistic),
                prefix in _HEADLINE_STATS[name],
                legacy,
            )
        )
    return metrics


def _decode_speed() -> list[Metric]:
    """FastDeploy's per-request decode speed, (n_out - 1) / (t_last - t_first), tok/s."""
    metrics = []
    for prefix, statistic, _ in _LATENCY_STATS:
        legacy = ("decode_speed_tok_s",) if prefix == "mean" else ()
        noise = Noise(Samples.DECODE_SPEED, statistic)
        label = f"decode speed {prefix} (tok/s)"
        metrics.append(
            Metric(f"{prefix}_s_decode", label, "tok/s", HIGHER, noise, prefix == "mean", legacy)
        )
    return metrics


def _gaps() -> list[Metric]:
    stats = [("p50", Statistic.MEDIAN), ("p90", Statistic.P90), ("p99", Statistic.P99)]
    stats.append(("mean", Statistic.MEAN))
    metrics = [
        Metric(f"gap_{s}_us", f"gap {s} (µs)", "µs", LOWER, Noise(Samples.GAPS, st), True)
        for s, st in stats
    ]
    return [
        *metrics,
        Metric("gap_max_us", "gap max (µs)", "µs", LOWER, headline=True),
        Metric("gap_samples", "gaps counted", "", NEUTRAL),
        Metric("idle_fraction", "idle fraction", "", LOWER, headline=True),
        Metric("busy_total_us", "device busy, total (µs)", "µs", NEUTRAL),
        Metric("gap_total_us", "gaps, total (µs)", "µs", LOWER),
        Metric("gap_profiler_us", "gaps the profiler caused (µs)", "µs", NEUTRAL),
        Metric("device_span_us", "device span (µs)", "µs", NEUTRAL),
    ]


_RATE = Noise(Samples.STEP_RATE, Statistic.RATE, exact=False)


def _throughput() -> list[Metric]:
    return [
        Metric("request_throughput", "request throughput (req/s)", "req/s", HIGHER, _RATE, True),
        Metric("request_goodput", "request goodput (req/s)", "req/s", HIGHER, None, True),
        Metric(
            "output_throughput",
            "output throughput (tok/s)",
            "tok/s",
            HIGHER,
            _RATE,
            True,
            ("output_throughput_tok_s",),
        ),
        Metric(
            "total_token_throughput", "total token throughput (tok/s)", "tok/s", HIGHER, _RATE, True
        ),
    ]


def _counts() -> list[Metric]:
    return [
        Metric("duration", "duration (s)", "s", LOWER, headline=True, legacy=("wall_s",)),
        Metric("num_steps", "steps", "", NEUTRAL, headline=True),
        Metric("completed", "requests completed", "", NEUTRAL),
        Metric("num_requests", "requests", "", NEUTRAL),
        Metric("total_input_tokens", "input tokens", "", NEUTRAL),
        Metric(
            "total_output_tokens",
            "output tokens",
            "",
            NEUTRAL,
            headline=True,
            legacy=("output_tokens",),
        ),
        Metric("num_decode_steps", "decode steps (with or without prompt chunks)", "", NEUTRAL),
        Metric("num_mixed_steps", "mixed steps (decode rows + prompt chunks)", "", NEUTRAL),
        Metric("warmup_steps", "warm-up steps", "", NEUTRAL),
        Metric("token_digest", "token digest", "", NEUTRAL, headline=True),
    ]


METRICS: tuple[Metric, ...] = (  # in the order tables show them
    *_gaps(),
    *_latency("tpot", "TPOT", Samples.TPOT, "tpot"),
    *_latency("ttft", "TTFT", Samples.TTFT, "ttft"),
    *_latency("itl", "ITL", Samples.ITL, "itl"),
    *_latency("e2el", "E2E latency", Samples.E2EL, "e2e"),
    *_throughput(),
    *_decode_speed(),
    *_counts(),
)
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
LEGACY_KEYS: dict[str, str] = {old: m.key for m in METRICS for old in m.legacy}


def canonical(key: str) -> str:
    """The current name of a summary key (schema-1 names map to their successors)."""
    return LEGACY_KEYS.get(key, key)


def metric(key: str) -> Metric | None:
    """The registered metric of `key` (current or schema-1 name), or None."""
    return BY_KEY.get(canonical(key))


def headline() -> list[Metric]:
    """The metrics every side-by-side table shows, in reading order."""
    return [m for m in METRICS if m.headline]
