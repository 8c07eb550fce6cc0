"""Per-step, per-request and summary metrics, exactly as DESIGN.md defines them.

Stateless functions from an engine run (or any per-step table) to DataFrames and a flat
summary dict; nothing here touches the engine, the disk or a plot.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reference_engine.probe import IDLE, PHASES, PROFILER
from stepgap.goodput import GoodputSLO

if TYPE_CHECKING:
    from reference_engine.engine import RunOutput

# a step's device interval and the gap before it, as every rank's table has them
DEVICE_TIMING_COLUMNS = [
    "device_start_us",
    "device_end_us",
    "busy_us",
    "gap_before_us",
    "after_idle",
    "excluded",
]
STEP_COLUMNS = [
    "step",
    "kind",
    "batch_size",
    "num_tokens",
    "decode_rows",
    "prefill_tokens",
    "chunks",
    *DEVICE_TIMING_COLUMNS,
    *[f"host_{p}_us" for p in PHASES],
    *[f"gap_{p}_us" for p in (*PHASES, "other")],
]
DEFAULT_WARMUP_STEPS = 5


def phase_table(spans: list) -> pd.DataFrame:
    """Host phase spans (step, phase, start_us, end_us) on the run's host clock."""
    return pd.DataFrame(
        [(s.step, s.phase, s.start_ns / 1e3, s.end_ns / 1e3) for s in spans],
        columns=["step", "phase", "start_us", "end_us"],
    )


def step_table(run: RunOutput, span_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per step: device interval, gap before it, host phase time and gap attribution.

    Host phase time is the host-clock duration of each phase spent on that step. Gap
    attribution (`gap_<phase>_us`) splits each device gap by which host phase the host was
    in during it (device times mapped onto the host clock by `host_clock_offset_us`);
    `gap_other_us` is what no phase covers — launch latency and Python between phases.
    `span_frame` is `phase_table` of the run's host phase spans.
    """
    rows = [
        {
            "step": r.step.index,
            "kind": r.step.kind.value,
            "batch_size": len(r.step.requests),
            "num_tokens": r.step.num_tokens,
            "decode_rows": len(r.step.decodes),
            "prefill_tokens": r.step.prefill_tokens,
            "chunks": len(r.step.chunks),
            "device_start_us": r.device_start_us,
            "device_end_us": r.device_end_us,
        }
        for r in run.steps
    ]
    table = pd.DataFrame(rows, columns=STEP_COLUMNS[:9])
    table["busy_us"] = table.device_end_us - table.device_start_us
    table["gap_before_us"] = table.device_start_us - table.device_end_us.shift(1)
    for phase in PHASES:
        per_step = span_frame[span_frame.phase == phase].assign(d=lambda f: f.end_us - f.start_us)
        durations = per_step.groupby("step").d.sum()
        table[f"host_{phase}_us"] = table.step.map(durations).fillna(0.0)
    table["excluded"] = _gap_exclusions(table, span_frame)
    table["after_idle"] = table.excluded != ""
    offset_us = host_clock_offset_us(table, span_frame, run.origin_host_ns / 1e3)
    attribution = _attribute_gaps(table, span_frame, offset_us)
    for column, values in attribution.items():
        table[column] = values
    return table[STEP_COLUMNS]


def _gap_exclusions(table: pd.DataFrame, spans: pd.DataFrame) -> np.ndarray:
    """Why each gap is not the engine's doing, or "": the host paused (waiting for an
    arrival: "arrival"; starting or stopping the profiler: "profiler") between launching the
    previous step and launching this one. The profiler's reason wins when both apply."""
    reasons = np.full(len(table), "", dtype=object)
    launch = spans[spans.phase == "launch"].set_index("step")
    if launch.empty:
        return reasons
    launch_start = table.step.map(launch.start_us).to_numpy()
    previous_end = table.step.map(launch.end_us).shift(1).to_numpy()
    for pause, reason in ((IDLE, "arrival"), (PROFILER, "profiler")):
        paused = spans[spans.phase == pause].sort_values("start_us")
        pause_start, pause_end = paused.start_us.to_numpy(), paused.end_us.to_numpy()
        for i in range(1, len(table)):
            # a pause starting before this launch and ending after the previous one
            n_started = np.searchsorted(pause_start, launch_start[i])
            if (pause_end[:n_started] > previous_end[i]).any():
                reasons[i] = reason
    return reasons


def excluded_gaps(steps: pd.DataFrame) -> list[dict]:
    """The gaps left out of the statistics, with their reasons (saved in run.json)."""
    if "excluded" not in steps.columns:
        return []
    excluded = steps[steps.excluded.fillna("").astype(str) != ""]
    return [
        {"step": int(row.step), "gap_us": float(row.gap_before_us), "reason": row.excluded}
        for row in excluded.itertuples()
    ]


CLOCK_WINDOW_STEPS = 33
TIGHT_BOUND_US = 10.0


def host_clock_offset_us(table: pd.DataFrame, spans: pd.DataFrame, origin_us: float) -> np.ndarray:
    """Per step, host time minus device time (µs), to put device intervals on the host clock.

    The GPU timer and the host clock drift apart (tens of µs per second were seen on an
    H100), so one offset taken at the run's start is off by hundreds of µs later on. Steps
    bracket the offset instead. The device cannot start a step before the host submitted
    it: offset >= launch start - device start, tight when the device sat idle waiting for
    that launch (a gap before the step). The host cannot see a step's output before the
    device finished it: offset <= wait end - device end, tight when the host blocked in that
    wait. A step's device interval is its first to its last op, so the lower bound is
    loose by the launch call's own length (a graph launch of a whole model: ~200 µs on an
    H200 with the profiler on), while the upper bound is off only by the host's wake-up
    latency. The estimate is the tight upper bounds of neighbouring steps (a rolling min),
    else the tight lower bounds (a rolling max), never below the lower bounds' rolling max;
    interpolated across steps with neither, and the origin's offset where a run recorded no
    host phases. Checked against a profiler trace's host ranges on a common clock:
    `scripts/gpu_analyze_attribution.py`.
    """
    fallback = pd.Series(origin_us, index=table.index, dtype=float)
    phases = spans.groupby(["phase", "step"]).agg(
        start_us=("start_us", "min"), end_us=("end_us", "max")
    )
    names = set(phases.index.get_level_values(0))
    if not {"launch", "wait"} <= names:
        return fallback.to_numpy()
    launch, wait = phases.loc["launch"], phases.loc["wait"]
    lower = table.step.map(launch.start_us) - table.device_start_us
    lower = lower.where(table.gap_before_us > TIGHT_BOUND_US)
    upper = table.step.map(wait.end_us) - table.device_end_us
    upper = upper.where(table.step.map(wait.end_us - wait.start_us) > TIGHT_BOUND_US)
    window = dict(window=CLOCK_WINDOW_STEPS, center=True, min_periods=1)
    floor, ceiling = lower.rolling(**window).max(), upper.rolling(**window).min()
    estimate = ceiling.fillna(floor).clip(lower=floor).interpolate(limit_direction="both")
    return estimate.fillna(fallback).to_numpy()


def _attribute_gaps(table: pd.DataFrame, spans: pd.DataFrame, offset_us: np.ndarray) -> dict:
    gap_start = table.device_end_us.shift(1).to_numpy() + offset_us
    gap_end = table.device_start_us.to_numpy() + offset_us
    gap = np.clip(gap_end - gap_start, 0, None)
    out = {}
    covered = np.zeros(len(table))
    for phase in PHASES:
        phase_spans = spans[spans.phase == phase]
        s, e = phase_spans.start_us.to_numpy(), phase_spans.end_us.to_numpy()
        overlap = np.zeros(len(table))
        for i in range(1, len(table)):
            if gap[i] > 0:
                lo, hi = np.searchsorted(e, gap_start[i]), np.searchsorted(s, gap_end[i])
                overlap[i] = np.clip(
                    np.minimum(e[lo:hi], gap_end[i]) - np.maximum(s[lo:hi], gap_start[i]), 0, None
                ).sum()
        out[f"gap_{phase}_us"] = overlap
        covered += overlap
    out["gap_other_us"] = np.clip(gap - covered, 0, None)
    out = {k: np.where(np.isnan(gap_start), np.nan, v) for k, v in out.items()}
    return out


def request_table(run: RunOutput) -> pd.DataFrame:
    """One row per request: TTFT, ITL, E2E, TPOT (vLLM's), decode speed (FastDeploy's)."""
    rows = []
    for r in run.requests:
        times = r.token_times_s
        n = len(r.output)
        decode_s = times[-1] - times[0] if n >= 2 else math.nan
        rows.append(
            {
                "request_id": r.request_id,
                "arrival_s": r.arrival_s,
                "prompt_tokens": len(r.prompt),
                "output_tokens": n,
                "max_tokens": r.params.max_tokens,
                "temperature": r.params.temperature,
                "finish_reason": r.finish_reason.value if r.finish_reason else "unfinished",
                "discarded_tokens": r.discarded,
                "ttft_ms": (times[0] - r.arrival_s) * 1e3 if n else math.nan,
                "e2e_ms": (times[-1] - r.arrival_s) * 1e3 if n else math.nan,
                "tpot_ms": decode_s / (n - 1) * 1e3 if n >= 2 else math.nan,
                "itl_mean_ms": decode_s / (n - 1) * 1e3 if n >= 2 else math.nan,
                "decode_speed_tok_s": (n - 1) / decode_s if n >= 2 and decode_s > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)


def itl_samples_ms(token_times: dict[int, list[float]]) -> np.ndarray:
    """All inter-token latencies (ms) of all requests."""
    diffs = [np.diff(np.asarray(t)) for t in token_times.values() if len(t) >= 2]
    return np.concatenate(diffs) * 1e3 if diffs else np.array([])


def token_digest(tokens: dict[int, list[int]]) -> str:
    """A short hash of every request's token ids: equal digests, identical tokens."""
    payload = json.dumps(sorted(tokens.items()), separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


DECODE_KINDS = ("decode", "mixed")  # steps of the decode loop (mixed: with prompt chunks)


def gap_sample(steps: pd.DataFrame, warmup_steps: int = DEFAULT_WARMUP_STEPS) -> pd.Series:
    """The gaps the summary statistics use: decode steps (with or without prompt chunks)
    after warm-up, excluding gaps in which the engine had nothing to run until a request
    arrived or the profiler started or stopped."""
    decode = steps[steps.kind.isin(DECODE_KINDS)] if "kind" in steps else steps
    decode = decode.iloc[warmup_steps:]
    if "after_idle" not in decode:  # an analysed trace's table: every gap counts
        return decode.gap_before_us.dropna()
    return decode.gap_before_us[~decode.after_idle.astype(bool)].dropna()


def _finite(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def _quantiles(values: Any, prefix: str, unit: str) -> dict[str, float]:
    """stepgap's gap statistics: `{prefix}_p50/p90/p99/mean_{unit}`."""
    values = _finite(values)
    keys = [f"{prefix}_p{q}_{unit}" for q in (50, 90, 99)] + [f"{prefix}_mean_{unit}"]
    if not len(values):
        return dict.fromkeys(keys, math.nan)
    stats = [*np.percentile(values, [50, 90, 99]), values.mean()]
    return {key: float(value) for key, value in zip(keys, stats, strict=True)}


def bench_stats(values: Any, name: str) -> dict[str, float]:
    """`vllm bench serve`'s statistics of one quantity: `{mean,median,std,p90,p99}_{name}`
    (std over the population, as vLLM computes it); NaN when there are no values."""
    values = _finite(values)
    keys = [f"{stat}_{name}" for stat in ("mean", "median", "std", "p90", "p99")]
    if not len(values):
        return dict.fromkeys(keys, math.nan)
    stats = [values.mean(), np.median(values), values.std(), *np.percentile(values, [90, 99])]
    return {key: float(value) for key, value in zip(keys, stats, strict=True)}


def _profiler_gaps_us(steps: pd.DataFrame) -> float:
    """Device idle caused by the measurement itself (profiler start/stop)."""
    if "excluded" not in steps.columns:
        return 0.0
    return float(steps.gap_before_us[steps.excluded == "profiler"].sum(skipna=True))


def _idle_fraction(total_gaps_us: float, span_us: float, measurement_us: float) -> float:
    """Σ gaps / device span, both without the gaps the profiler caused."""
    denominator = span_us - measurement_us
    if not denominator or denominator <= 0 or math.isnan(denominator):
        return math.nan
    return float((total_gaps_us - measurement_us) / denominator)


def summarize(
    steps: pd.DataFrame,
    requests: pd.DataFrame,
    token_times: dict[int, list[float]],
    tokens: dict[int, list[int]],
    duration_s: float,
    warmup_steps: int = DEFAULT_WARMUP_STEPS,
    goodput: GoodputSLO | None = None,
) -> dict[str, float | int | str | None]:
    """The flat summary every report, comparison and gate reads (keys: stepgap.metric_registry)."""
    summary: dict[str, float | int | str | None] = {
        **gap_summary(steps, warmup_steps),
        **bench_stats(requests.get("tpot_ms", []), "tpot_ms"),
        **bench_stats(requests.get("ttft_ms", []), "ttft_ms"),
        **bench_stats(itl_samples_ms(token_times), "itl_ms"),
        **bench_stats(requests.get("e2e_ms", []), "e2el_ms"),
        **bench_stats(requests.get("decode_speed_tok_s", []), "s_decode"),
        **throughput_summary(requests, duration_s, goodput),
        "num_steps": len(steps),
        "num_decode_steps": int(steps.kind.isin(DECODE_KINDS).sum()),
        "num_mixed_steps": int((steps.kind == "mixed").sum()),
        "warmup_steps": warmup_steps,
        "duration": duration_s,
        "token_digest": token_digest(tokens),
    }
    return summary


def gap_summary(steps: pd.DataFrame, warmup_steps: int) -> dict[str, float | int]:
    """Gap statistics over decode steps after warm-up, and the device's idle fraction."""
    gaps = gap_sample(steps, warmup_steps)
    span_us = steps.device_end_us.max() - steps.device_start_us.min() if len(steps) else math.nan
    total_gaps = steps.gap_before_us.sum(skipna=True)
    measurement_us = _profiler_gaps_us(steps)
    return {
        **_quantiles(gaps, "gap", "us"),
        "gap_max_us": float(gaps.max()) if len(gaps) else math.nan,
        "gap_samples": len(gaps),
        "idle_fraction": _idle_fraction(total_gaps, span_us, measurement_us),
        "busy_total_us": float(steps.busy_us.sum()),
        "gap_total_us": float(total_gaps),
        "gap_profiler_us": measurement_us,
        "device_span_us": float(span_us),
    }


def throughput_summary(
    requests: pd.DataFrame, duration_s: float, goodput: GoodputSLO | None
) -> dict[str, float | int | None]:
    """vLLM's request, output and total-token throughput, and goodput when SLOs are given."""
    completed = _completed(requests)
    input_tokens = _column_total(completed, "prompt_tokens")
    output_tokens = _column_total(requests, "output_tokens")

    def per_second(count: float) -> float:
        return count / duration_s if duration_s > 0 else math.nan

    return {
        "completed": len(completed),
        "num_requests": len(requests),
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput": per_second(len(completed)),
        "request_goodput": per_second(goodput.good(requests)) if goodput else None,
        "output_throughput": per_second(output_tokens),
        "total_token_throughput": per_second(input_tokens + output_tokens),
    }


def _completed(requests: pd.DataFrame) -> pd.DataFrame:
    if "finish_reason" not in requests.columns:
        return requests
    return requests[requests.finish_reason != "unfinished"]


def _column_total(frame: pd.DataFrame, column: str) -> int:
    return int(frame[column].sum()) if column in frame.columns and len(frame) else 0


def arrival_wait_share(steps: pd.DataFrame) -> float:
    """The share of the device span spent idle waiting for requests to arrive: above a few
    percent, throughput measures the arrival clock more than the engine."""
    if "excluded" not in steps.columns or not len(steps):
        return 0.0
    span = steps.device_end_us.max() - steps.device_start_us.min()
    waited = steps.gap_before_us[steps.excluded == "arrival"].sum(skipna=True)
    return float(waited / span) if span and span > 0 else 0.0
