"""Which summary metrics to show side by side, and their ratios between runs."""

from __future__ import annotations

import math
from typing import Any

# (key, label, better): better is "lower" or "higher" (for reading ratios).
HEADLINE = [
    ("gap_p50_us", "gap p50 (µs)", "lower"),
    ("gap_p90_us", "gap p90 (µs)", "lower"),
    ("gap_p99_us", "gap p99 (µs)", "lower"),
    ("gap_mean_us", "gap mean (µs)", "lower"),
    ("gap_max_us", "gap max (µs)", "lower"),
    ("idle_fraction", "idle fraction", "lower"),
    ("tpot_mean_ms", "TPOT mean (ms)", "lower"),
    ("tpot_p50_ms", "TPOT p50 (ms)", "lower"),
    ("tpot_p99_ms", "TPOT p99 (ms)", "lower"),
    ("ttft_p50_ms", "TTFT p50 (ms)", "lower"),
    ("itl_p50_ms", "ITL p50 (ms)", "lower"),
    ("output_throughput_tok_s", "output throughput (tok/s)", "higher"),
    ("decode_speed_tok_s", "decode speed (tok/s)", "higher"),
    ("wall_s", "wall time (s)", "lower"),
    ("num_steps", "steps", None),
    ("output_tokens", "output tokens", None),
    ("token_digest", "token digest", None),
]


def ratio(b: Any, a: Any) -> float:
    """b / a for numbers, NaN where undefined."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    if math.isnan(a) or math.isnan(b) or a == 0:
        return math.nan
    return b / a


def side_by_side(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of (metric, value per run..., last/first ratio) for the headline metrics."""
    names = list(summaries)
    rows = []
    for key, label, _ in HEADLINE:
        row: dict[str, Any] = {"metric": key, "label": label}
        for name in names:
            row[name] = summaries[name].get(key, math.nan)
        if len(names) >= 2:
            row["ratio"] = ratio(row[names[-1]], row[names[0]])
        rows.append(row)
    return rows
