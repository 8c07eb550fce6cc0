"""Tensor-parallel runs: each rank's step table and gap statistics, and how a step's gaps
combine across ranks.

Every rank times its own steps on its own device clock (the step-table copies stamp it), so
each rank's gaps are differences on one clock; no two clocks are ever compared. A step
needs every rank (each layer all-reduces), so the slowest rank's gap gates it: the
`slowest` view takes, step by step, the largest gap of any rank, then the same statistics
over the same steps (decode steps after warm-up, none after an arrival pause) as rank 0's.

Summary keys: rank 0's figures stay under the existing keys (`gap_p50_us`, ...); every
rank's, rank 0's included, are `rank<r>.<key>` and the combined ones `slowest.<key>`. A gate
rule names them as any metric (`rank1.gap_p50_us`, `overlap.slowest.gap_p99_us`).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from stepgap.metrics import DEVICE_TIMING_COLUMNS, gap_sample, gap_summary

SLOWEST = "slowest"
RANK_KEYS = (
    "gap_p50_us",
    "gap_p90_us",
    "gap_p99_us",
    "gap_mean_us",
    "gap_max_us",
    "gap_samples",
    "idle_fraction",
    "gap_total_us",
    "busy_total_us",
)
SLOWEST_KEYS = RANK_KEYS[:6]  # gap statistics; idle fraction: the most idle rank's
FOLLOWER_PHASES = ("receive", "wait", "prepare", "launch")
RANK_STEP_COLUMNS = [
    "step",
    "kind",
    "batch_size",
    "num_tokens",
    *DEVICE_TIMING_COLUMNS,
    *[f"host_{phase}_us" for phase in FOLLOWER_PHASES],
]
_VIEW = re.compile(r"^(rank(?P<rank>\d+)|slowest)\.(?P<metric>.+)$")


def rank_key(view: int | str, metric: str) -> str:
    """`rank1.gap_p50_us` for rank 1; `slowest.gap_p50_us` for the combined view."""
    return f"{view}.{metric}" if isinstance(view, str) else f"rank{view}.{metric}"


def split_key(key: str) -> tuple[int | str, str] | None:
    """(rank or "slowest", metric) of a per-rank summary key; None for any other key."""
    match = _VIEW.match(key)
    if match is None:
        return None
    rank = match.group("rank")
    return (int(rank) if rank is not None else SLOWEST), match.group("metric")


def rank_step_table(steps: pd.DataFrame, rank_steps: Any, phases: pd.DataFrame) -> pd.DataFrame:
    """One follower's steps (`RankSteps`), one row per step of rank 0's table, its gaps on
    its own clock; what a step was (kind, batch) and whether it followed an arrival pause
    come from rank 0, which scheduled it. `phases`: the follower's host phases
    (`metrics.phase_table` of its spans)."""
    times = pd.DataFrame(
        [(s.step, s.device_start_us, s.device_end_us) for s in rank_steps.steps],
        columns=["step", "device_start_us", "device_end_us"],
    )
    shared = steps[["step", "kind", "batch_size", "num_tokens", "after_idle", "excluded"]]
    table = shared.merge(times, on="step", how="left")
    table["busy_us"] = table.device_end_us - table.device_start_us
    table["gap_before_us"] = table.device_start_us - table.device_end_us.shift(1)
    durations = phases.assign(d=phases.end_us - phases.start_us).groupby(["phase", "step"]).d.sum()
    for phase in FOLLOWER_PHASES:
        per_step = durations.loc[phase] if phase in durations.index.get_level_values(0) else None
        mapped = table.step.map(per_step) if per_step is not None else math.nan
        table[f"host_{phase}_us"] = pd.Series(mapped, index=table.index).fillna(0.0)
    return table[RANK_STEP_COLUMNS]


def slowest_steps(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Rank 0's table (`tables[0]`) with each step's gap the largest any rank had."""
    gaps = pd.concat([t.set_index("step").gap_before_us for t in tables], axis=1)
    combined = tables[0].copy()
    combined["gap_before_us"] = combined.step.map(gaps.max(axis=1, skipna=True))
    return combined


def rank_summary(tables: list[pd.DataFrame], warmup_steps: int) -> dict[str, float | int]:
    """`rank<r>.*` for every rank (tables[0] is rank 0's) and `slowest.*` over them."""
    out: dict[str, float | int] = {}
    for rank, table in enumerate(tables):
        figures = gap_summary(table, warmup_steps)
        out |= {rank_key(rank, key): figures[key] for key in RANK_KEYS}
    combined = gap_summary(slowest_steps(tables), warmup_steps)
    out |= {rank_key(SLOWEST, key): combined[key] for key in SLOWEST_KEYS}
    idle = [out[rank_key(rank, "idle_fraction")] for rank in range(len(tables))]
    finite = [float(v) for v in idle if not math.isnan(float(v))]
    out[rank_key(SLOWEST, "idle_fraction")] = max(finite) if finite else math.nan
    return out


def rank_gap_samples(tables: list[pd.DataFrame], view: int | str, warmup: int) -> np.ndarray:
    """The gaps behind a view's gap statistics (what a gate bootstraps)."""
    if view == SLOWEST:
        table = slowest_steps(tables)
    elif isinstance(view, int) and 0 <= view < len(tables):
        table = tables[view]
    else:
        return np.array([])
    return gap_sample(table, warmup).to_numpy(dtype=float)


def rank_tables(run: Any) -> list[pd.DataFrame]:
    """A run's step tables by rank: rank 0's, then its followers' (a `RunData`)."""
    return [run.steps, *(run.rank_steps[rank] for rank in sorted(run.rank_steps))]


def views(summary: Any) -> list[int | str]:
    """The ranks (then "slowest") a summary has per-rank figures of, in order."""
    found = {split[0] for key in summary if (split := split_key(key)) is not None}
    ranks = sorted(v for v in found if isinstance(v, int))
    return [*ranks, *([SLOWEST] if SLOWEST in found else [])]
