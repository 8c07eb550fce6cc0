"""Stateless functions from runs to the small DataFrames each report figure draws.

Everything here bounds its output size whatever the run length — a window of steps for
the timeline, quantiles for CDFs, binned counts for histograms and throughput — so a
100 000-step run plots as fast as a 100-step one. Nothing here draws or writes.

An analyzed trace's steps come in groups — per rank and device, and per stream when
analyzed with `--streams separate` — each measured on its own (`gap_before_us` is the idle
since the group's previous steps ended, never negative; `overlap_before_us` how long a step
ran beside them). `step_groups` splits a run into those groups; every figure keeps them
apart and takes each step's gap from its row, never from two rows of different groups.
An engine run is one group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reference_engine.probe import PHASES
from stepgap.metrics import DECODE_KINDS, DEFAULT_WARMUP_STEPS, gap_sample, itl_samples_ms
from stepgap.runs import RunData

TIMELINE_STEPS = 12  # few enough that a 1 µs gap is not lost among step bars at page width
CDF_POINTS = 400
HISTOGRAM_BINS = 60
THROUGHPUT_BINS = 80
STEPS_PER_THROUGHPUT_BIN = 8
LOG_SCALE_SPAN = 100.0  # max / min positive value from which an axis is log-scaled
ATTRIBUTION_COLUMNS = [f"gap_{phase}_us" for phase in (*PHASES, "other")]
LATENCY_METRICS = {"tpot": "TPOT", "itl": "ITL", "ttft": "TTFT"}
GROUP_KEYS = ("rank", "device", "stream")  # what tells an analyzed trace's step groups apart


def warmup_steps(run: RunData) -> int:
    """The warm-up the run's own summary used, so plots and tables count the same gaps."""
    configured = run.summary.get("warmup_steps", run.meta.get("config", {}).get("warmup_steps"))
    return int(configured) if isinstance(configured, int | float) else DEFAULT_WARMUP_STEPS


def normalized_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """`steps` with `kind` and `after_idle` present. Analyzed traces may lack them or not
    tell decode from other steps: then every step counts as a decode step that did not
    follow idleness."""
    out = steps
    if "kind" not in out.columns or not (out.kind == "decode").any():
        out = out.assign(kind="decode")
    if "after_idle" not in out.columns:
        out = out.assign(after_idle=False)
    return out


def has_step_timing(steps: pd.DataFrame) -> bool:
    needed = {"device_start_us", "device_end_us", "gap_before_us"}
    return needed <= set(steps.columns) and len(steps) > 0


@dataclass(frozen=True)
class StepGroup:
    """The steps of one rank, device (and stream) of a run: a lane of the report."""

    name: str  # "rank 1 · stream 9": the keys that differ between the run's groups; "" if one
    key: dict[str, Any]  # column -> value, as in steps.csv
    steps: pd.DataFrame  # the group's rows, in the run's order


def group_keys(run: RunData) -> list[str]:
    """The steps.csv columns whose values make one step group: those of run.json's
    `groups` entries (written by `stepgap analyze`), else rank and device (and stream with
    `--streams separate`) where present. Empty for an engine run: one group."""
    columns = set(run.steps.columns)
    groups = run.meta.get("groups")
    if isinstance(groups, list) and groups and isinstance(groups[0], dict):
        keys = [k for k in GROUP_KEYS if k in groups[0]]
    else:
        analyze = (run.meta.get("config") or {}).get("analyze") or {}
        separate = isinstance(analyze, dict) and analyze.get("streams") == "separate"
        keys = ["rank", "device", *(["stream"] if separate else [])]
    return [k for k in keys if k in columns]


def plain(value: Any) -> str:
    """A group key's value as text: 0 for 0.0, the label itself for "7+9"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def step_groups(run: RunData) -> list[StepGroup]:
    """The run's step groups in key order; one unnamed group for an engine run."""
    keys, steps = group_keys(run), run.steps
    if not keys or not len(steps):
        return [StepGroup("", {}, steps)]
    split = list(steps.groupby(keys, sort=True, dropna=False))
    if len(split) == 1:
        values = split[0][0] if isinstance(split[0][0], tuple) else (split[0][0],)
        return [StepGroup("", dict(zip(keys, values, strict=True)), steps)]
    varying = [k for k in keys if steps[k].nunique(dropna=False) > 1]
    groups = []
    for values, rows in split:
        key = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        name = " · ".join(f"{k} {plain(key[k])}" for k in varying)
        groups.append(StepGroup(name, key, rows))
    return groups


def lane_label(run_label: str, group: StepGroup) -> str:
    """A group's label in figures: the run's label, then the group's name if it has one."""
    return f"{run_label} · {group.name}" if group.name else run_label


def group_gap_values(steps: pd.DataFrame, warmup: int) -> np.ndarray:
    """One group's gaps (µs) that the summary statistics use: decode steps after the
    group's own warm-up, each gap as its row states it."""
    if not has_step_timing(steps):
        return np.array([])
    return gap_sample(normalized_steps(steps), warmup).to_numpy(dtype=float)


def gap_values(run: RunData) -> np.ndarray:
    """The gaps (µs) the summary statistics use: decode steps after warm-up, in each step
    group after its own warm-up (as `stepgap analyze` pools them)."""
    warmup = warmup_steps(run)
    samples = [group_gap_values(group.steps, warmup) for group in step_groups(run)]
    return np.concatenate(samples) if samples else np.array([])


def timeline_window(steps: pd.DataFrame, warmup: int, length: int = TIMELINE_STEPS) -> pd.DataFrame:
    """A typical window of `length` consecutive decode steps after warm-up of one step
    group, in the order they start on the device, times relative to the window's first
    step.

    Of all such windows in the group, the one whose idle time (sum of the gaps inside it)
    is the median: neither a lucky nor an unlucky stretch. With no window that long, the
    longest decode streak. Each gap is the row's own `gap_before_us` (never recomputed from
    two rows: with overlapping steps the previous row is not what the device waited for).
    Columns: step, start_us, end_us (from the window start), busy_us, gap_before_us (NaN
    for the first step), overlap_before_us (0 where the row has none).
    """
    columns = ["step", "start_us", "end_us", "busy_us", "gap_before_us", "overlap_before_us"]
    if not has_step_timing(steps):
        return pd.DataFrame(columns=columns)
    steps = normalized_steps(steps).dropna(subset=["device_start_us", "device_end_us"])
    steps = steps.sort_values("device_start_us", kind="stable").reset_index(drop=True)
    if not len(steps):
        return pd.DataFrame(columns=columns)
    is_decode = (steps.kind.isin(DECODE_KINDS) & ~steps.after_idle.astype(bool)).to_numpy()
    eligible = is_decode & (np.cumsum(is_decode) > warmup)
    if not eligible.any():
        eligible = is_decode if is_decode.any() else np.ones(len(steps), dtype=bool)
    streak = _streak_lengths(eligible)
    ends = np.flatnonzero(streak >= length)
    gap_column = steps.gap_before_us.astype(float)
    if len(ends):
        gaps = gap_column.fillna(0.0).to_numpy()
        inner = np.convolve(gaps, np.ones(max(length - 1, 1)), mode="full")[: len(gaps)]
        idle = inner[ends] if length > 1 else np.zeros(len(ends))
        end = int(ends[np.argsort(idle, kind="stable")[len(ends) // 2]])
        begin = end - length + 1
    else:
        end = int(np.argmax(streak))
        begin = end - int(streak[end]) + 1
    window = steps.iloc[begin : end + 1]
    origin = window.device_start_us.iloc[0]
    gap = gap_column.iloc[begin : end + 1].to_numpy().copy()
    gap[0] = np.nan  # before the window: not drawn
    overlap = (
        window.overlap_before_us.astype(float).fillna(0.0).to_numpy()
        if "overlap_before_us" in window
        else np.zeros(len(window))
    )
    return pd.DataFrame(
        {
            "step": window.step.to_numpy() if "step" in window else np.arange(begin, end + 1),
            "start_us": (window.device_start_us - origin).to_numpy(),
            "end_us": (window.device_end_us - origin).to_numpy(),
            "busy_us": (window.device_end_us - window.device_start_us).to_numpy(),
            "gap_before_us": gap,
            "overlap_before_us": overlap,
        }
    )


def _streak_lengths(flags: np.ndarray) -> np.ndarray:
    """For each position, how many consecutive True values end there (0 where False)."""
    counts = np.cumsum(flags)
    resets = np.maximum.accumulate(np.where(flags, 0, counts))
    return counts - resets


def cdf_points(values: np.ndarray, points: int = CDF_POINTS) -> pd.DataFrame:
    """An empirical CDF as at most `points` (value, fraction) pairs: exact for small
    samples, quantiles at evenly spaced fractions otherwise."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return pd.DataFrame(columns=["value", "fraction"])
    if len(values) <= points:
        # (min, 0) first, so a step plot rises from zero at the smallest value.
        ordered = np.sort(values)
        fractions = np.arange(0, len(ordered) + 1) / len(ordered)
        return pd.DataFrame({"value": np.append(ordered[:1], ordered), "fraction": fractions})
    fractions = np.linspace(0.0, 1.0, points)
    return pd.DataFrame({"value": np.quantile(values, fractions), "fraction": fractions})


def use_log_scale(samples: list[np.ndarray]) -> bool:
    """Log-scale an axis when its positive values span `LOG_SCALE_SPAN` or more."""
    positive = [s[s > 0] for s in samples if len(s)]
    positive = [p for p in positive if len(p)]
    if not positive:
        return False
    low = min(float(p.min()) for p in positive)
    high = max(float(p.max()) for p in positive)
    return high / low >= LOG_SCALE_SPAN


def histogram_counts(
    samples: dict[str, np.ndarray], log: bool, bins: int = HISTOGRAM_BINS
) -> pd.DataFrame:
    """Binned counts of every run's values on shared bin edges (log-spaced when `log`).

    Columns: run, left, right, count, share (count / the run's sample size, so runs with
    different sample sizes compare). On a log scale non-positive values cannot be drawn;
    they are left out and counted in `dropped` (one value per run).
    """
    finite = {name: s[~np.isnan(s)] for name, s in samples.items()}
    shown = {name: s[s > 0] if log else s for name, s in finite.items()}
    pooled = np.concatenate([s for s in shown.values() if len(s)] or [np.array([])])
    if not len(pooled):
        return pd.DataFrame(columns=["run", "left", "right", "count", "share", "dropped"])
    low, high = float(pooled.min()), float(pooled.max())
    if high <= low:
        high = low + max(abs(low), 1.0) * 1e-3
    edges = np.geomspace(low, high, bins + 1) if log else np.linspace(low, high, bins + 1)
    frames = []
    for name, values in shown.items():
        counts, _ = np.histogram(values, bins=edges)
        total = max(len(finite[name]), 1)
        frames.append(
            pd.DataFrame(
                {
                    "run": name,
                    "left": edges[:-1],
                    "right": edges[1:],
                    "count": counts,
                    "share": counts / total,
                    "dropped": len(finite[name]) - len(values),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def gap_attribution(run: RunData) -> pd.Series | None:
    """Mean µs per gap spent in each host phase (and `other`), over the summary's gaps.

    None when the run has no attribution columns (e.g. a trace without host phases).
    """
    steps = run.steps
    columns = [c for c in ATTRIBUTION_COLUMNS if c in steps.columns]
    if not columns or not has_step_timing(steps):
        return None
    sample = gap_sample(normalized_steps(steps), warmup_steps(run))
    if not len(sample):
        return None
    means = steps.loc[sample.index, columns].astype(float).mean()
    means.index = [c.removeprefix("gap_").removesuffix("_us") for c in columns]
    return means


def latency_samples(run: RunData) -> dict[str, np.ndarray]:
    """Per-request TPOT and TTFT (ms) from requests.csv; every ITL (ms) from token times."""
    out = {}
    for key in ("tpot", "ttft"):
        column = f"{key}_ms"
        present = column in run.requests.columns
        out[key] = run.requests[column].to_numpy(dtype=float) if present else np.array([])
    out["itl"] = itl_samples_ms(run.token_times)
    return {key: values[~np.isnan(values)] for key, values in out.items()}


def _token_stamps(token_times: dict[int, list[float]]) -> np.ndarray:
    times = [np.asarray(t, dtype=float) for t in token_times.values() if len(t)]
    stamps = np.concatenate(times) if times else np.array([])
    return stamps[~np.isnan(stamps)]


def throughput_bin_width_s(runs_token_times: list[dict[int, list[float]]]) -> float:
    """One bin width for every run, so equal throughput draws at equal height across runs.

    The longest run's span over `THROUGHPUT_BINS`, but no narrower than
    `STEPS_PER_THROUGHPUT_BIN` token-emitting steps: a bin holding one or two steps
    would show step quantization (0, 1 or 2 steps per bin), not throughput.
    """
    stamps = [s for s in map(_token_stamps, runs_token_times) if len(s) >= 2]
    if not stamps:
        return math.nan
    longest = max(float(np.ptp(s)) for s in stamps)
    most_steps = max(len(np.unique(s)) for s in stamps)
    bins = max(1, min(THROUGHPUT_BINS, most_steps // STEPS_PER_THROUGHPUT_BIN))
    return longest / bins if longest > 0 else math.nan


def throughput_over_time(token_times: dict[int, list[float]], bin_width_s: float) -> pd.DataFrame:
    """Output tokens per second in bins of `bin_width_s` from the run's first token.

    Columns: start_s, end_s (bin edges from the first token), tok_s. The last bin is cut
    at the last token and its rate computed over that shorter width.
    """
    stamps = _token_stamps(token_times)
    if len(stamps) < 2 or not bin_width_s > 0 or np.ptp(stamps) <= 0:
        return pd.DataFrame(columns=["start_s", "end_s", "tok_s"])
    offsets = stamps - stamps.min()
    span = float(offsets.max())
    bins = max(1, math.ceil(span / bin_width_s))
    edges = np.minimum(np.arange(bins + 1) * bin_width_s, span)
    counts, _ = np.histogram(offsets, bins=edges)
    widths = np.diff(edges)
    keep = widths > 0
    return pd.DataFrame(
        {
            "start_s": edges[:-1][keep],
            "end_s": edges[1:][keep],
            "tok_s": counts[keep] / widths[keep],
        }
    )
