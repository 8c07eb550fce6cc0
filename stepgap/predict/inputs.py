"""A sync run's steps and requests as the replay's inputs: measured costs, typed records.

Per step, from `phases.csv` (host clock) and `steps.csv` (device clock), never mixing the
two clocks (a run's host and device clocks are only roughly aligned):
- `prepare_host_us` = launch start - start of the schedule call that returned the step;
- `launch_call_us` = the launch phase's length;
- `finish_host_us` = the next step's first schedule start - this step's wait end (the
  last step: its output end - its wait end);
- `dispatch_us` = the sync gap before the step - the previous step's `finish_host_us` -
  this step's `prepare_host_us`, at least 0: what the device waited beyond the host's
  phases (launch latency and the host's wake-up). The first step and steps after an
  arrival pause (their gap holds the workload's wait) get the median of the others;
- `device_busy_us` = busy_us of steps.csv.

Per request, from `requests.csv`: arrival, prompt and output lengths, and whether it
stopped on a token (EOS or a stop id: the overlap schedule sees that one step late) or by
length (known when the step is scheduled). The engine's shape (slots, model length, the
prefill policy and budget) comes from run.json's `config.engine`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reference_engine.scheduler import StepKind
from stepgap.predict.errors import PredictError, with_article
from stepgap.predict.model import StepCost
from stepgap.runs import RunData

LENGTH_STOPS = ("length",)  # known when scheduled: no step past the stop
REQUIRED_PHASES = ("schedule", "launch", "wait")


@dataclass(frozen=True)
class StepShape:
    """What a step holds: its kind, decode rows, prompt tokens and prompt chunks."""

    kind: StepKind
    decode_rows: int
    prefill_tokens: int
    chunks: int

    def __post_init__(self) -> None:
        if not isinstance(self.kind, StepKind):
            raise TypeError(f"StepShape.kind must be a StepKind, got {self.kind!r}")
        if min(self.decode_rows, self.prefill_tokens, self.chunks) < 0:
            raise ValueError(f"a step shape's counts must be >= 0: {self}")

    @property
    def num_tokens(self) -> int:
        return self.decode_rows + self.prefill_tokens


@dataclass(frozen=True)
class SyncStep:
    """One measured step of the sync run: its shape, its costs, the gap before it."""

    step: int
    shape: StepShape
    cost: StepCost
    gap_before_us: float  # NaN for the first step
    after_idle: bool


@dataclass(frozen=True)
class RequestRecord:
    """One request as the replay needs it (times in µs on the run's host clock)."""

    request_id: int
    arrival_us: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int
    stops_on_token: bool  # EOS or a stop id: overlap sees the stop one step late

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise ValueError(f"request {self.request_id}: prompt and output must be >= 1 token")
        if self.output_tokens > self.max_tokens:
            raise ValueError(f"request {self.request_id}: more output tokens than max_tokens")
        if not math.isfinite(self.arrival_us) or self.arrival_us < 0:
            raise ValueError(f"request {self.request_id}: arrival must be >= 0")


@dataclass(frozen=True)
class EngineShape:
    """The engine settings that decide which steps run (reference_engine.EngineConfig)."""

    max_num_seqs: int
    max_model_len: int
    max_prefill_tokens: int
    max_num_batched_tokens: int | None  # set: chunked prefill with this step budget

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_model_len < 2 or self.max_prefill_tokens < 1:
            raise ValueError(f"engine shape out of range: {self}")


@dataclass(frozen=True)
class SyncInputs:
    """Everything the replay reads from one sync run."""

    name: str
    steps: tuple[SyncStep, ...]
    requests: tuple[RequestRecord, ...]
    engine: EngineShape
    warmup_steps: int
    start_us: float  # the first schedule call's start (host clock)
    device_kind: str

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a sync run to predict from needs at least one step")
        if not self.requests:
            raise ValueError("a sync run to predict from needs at least one request")


def load_sync_inputs(run: RunData) -> SyncInputs:
    """The replay's inputs from a complete, instrumented sync run of the reference
    engine; PredictError (one line, naming what is missing) otherwise."""
    where = run_label(run)
    check_sync_run(run, where)
    phases = _phase_bounds(run.phases, run.steps, where)  # type: ignore[arg-type]
    steps = _sync_steps(run.steps, phases)
    return SyncInputs(
        run.name,
        steps,
        _requests(run.requests, where),
        _engine_shape(run.meta, where),
        int(run.meta.get("config", {}).get("warmup_steps", 5)),
        float(phases.first_schedule.iloc[0]),
        str(run.meta.get("environment", {}).get("device", {}).get("kind", "unknown")),
    )


def run_label(run: RunData) -> str:
    """How messages name a run: its directory, else its name."""
    return str(run.path) if run.path is not None else run.name


def check_sync_run(run: RunData, where: str) -> None:
    """A one-line PredictError unless `run` is a complete sync run with host phases."""
    if run.mode != "sync":
        raise PredictError(
            f"{where} is {with_article(run.mode)} run: predict reads a sync run "
            "(stepgap run --mode sync)"
        )
    if not run.complete:
        reason = run.meta.get("incomplete_reason", "unknown reason")
        raise PredictError(f"{where} is incomplete ({reason}): predict needs every step")
    if run.phases is None or run.phases.empty:
        what = "missing" if run.phases is None else "empty"
        raise PredictError(
            f"{where} has no host phases (phases.csv {what}): predict needs the host's "
            "per-step phase times (a run without --no-instrument)"
        )
    if run.steps.empty or run.steps.busy_us.isna().all():
        raise PredictError(f"{where} has no device steps (steps.csv busy_us): nothing to replay")
    if run.requests.empty:
        raise PredictError(f"{where} has no requests (requests.csv empty)")


def _phase_bounds(phases: pd.DataFrame, steps: pd.DataFrame, where: str) -> pd.DataFrame:
    """Per step: first and last schedule start, launch end, wait end, output end."""
    missing = [p for p in REQUIRED_PHASES if p not in set(phases.phase)]
    if missing:
        raise PredictError(f"{where}: phases.csv has no {', '.join(missing)} phase")
    by = phases.groupby(["phase", "step"])
    starts, ends = by.start_us.agg(["min", "max"]), by.end_us.max()
    table = pd.DataFrame(index=pd.Index(steps.step.to_numpy(), name="step"))
    table["first_schedule"] = starts["min"].loc["schedule"]
    table["last_schedule"] = starts["max"].loc["schedule"]
    table["launch_start"] = starts["min"].loc["launch"]
    table["launch_end"] = ends.loc["launch"]
    table["wait_end"] = ends.loc["wait"]
    table["output_end"] = ends.loc["output"] if "output" in ends.index else table.wait_end
    incomplete = table[["first_schedule", "launch_end", "wait_end"]].isna().any(axis=1)
    if incomplete.any():
        raise PredictError(
            f"{where}: {int(incomplete.sum())} of {len(table)} steps lack host phases "
            f"(first: step {int(table.index[incomplete.to_numpy()][0])})"
        )
    return table


def _sync_steps(steps: pd.DataFrame, phases: pd.DataFrame) -> tuple[SyncStep, ...]:
    prepare, launch, finish = _host_costs(phases)
    gaps = steps.gap_before_us.to_numpy(dtype=float)
    after_idle = steps.get("after_idle", pd.Series(False, index=steps.index)).astype(bool)
    dispatch = _dispatch(gaps, prepare, finish, after_idle.to_numpy())
    busy = np.clip(steps.busy_us.fillna(0.0).to_numpy(dtype=float), 0.0, None)
    return tuple(
        SyncStep(
            int(row.step),
            _shape(row),
            StepCost(prepare[i], launch[i], finish[i], dispatch[i], busy[i]),
            float(gaps[i]),
            bool(after_idle.iloc[i]),
        )
        for i, row in enumerate(steps.itertuples())
    )


def _host_costs(phases: pd.DataFrame) -> tuple[list[float], list[float], list[float]]:
    """Per step: prepare (schedule start -> launch call), the launch call, and finish (wait
    end -> the next iteration's start; the last step: -> its output's end)."""
    prepare = phases.launch_start - phases.last_schedule
    launch = phases.launch_end - phases.launch_start
    next_start = phases.first_schedule.shift(-1)
    finish = (next_start - phases.wait_end).fillna(phases.output_end - phases.wait_end)
    clipped = [[max(0.0, float(v)) for v in column] for column in (prepare, launch, finish)]
    return clipped[0], clipped[1], clipped[2]


def _dispatch(
    gaps: np.ndarray, prepare: list[float], finish: list[float], after_idle: np.ndarray
) -> list[float]:
    """The sync gap less the host phases around it; the first step and steps after an
    arrival pause get the median of the others."""
    dispatch = gaps - np.array([np.nan, *finish[:-1]]) - np.array(prepare)
    dispatch[after_idle] = np.nan
    fill = float(np.nanmedian(dispatch)) if np.isfinite(dispatch).any() else 0.0
    return [max(0.0, float(v)) for v in np.where(np.isnan(dispatch), fill, dispatch)]


def _shape(row: Any) -> StepShape:
    """A step's shape; runs from before chunked prefill have no decode_rows / chunks."""
    kind = StepKind(row.kind)
    if hasattr(row, "decode_rows") and not pd.isna(row.decode_rows):
        return StepShape(kind, int(row.decode_rows), int(row.prefill_tokens), int(row.chunks))
    if kind is StepKind.PREFILL:
        return StepShape(kind, 0, int(row.num_tokens), int(row.batch_size))
    return StepShape(kind, int(row.batch_size), 0, 0)


def _requests(requests: pd.DataFrame, where: str) -> tuple[RequestRecord, ...]:
    needed = ["request_id", "arrival_s", "prompt_tokens", "output_tokens", "max_tokens"]
    missing = [c for c in needed if c not in requests.columns]
    if missing:
        raise PredictError(f"{where}: requests.csv lacks {', '.join(missing)}")
    reasons = requests.get("finish_reason", pd.Series("length", index=requests.index))
    if (reasons == "unfinished").any():
        raise PredictError(f"{where}: {int((reasons == 'unfinished').sum())} requests unfinished")
    try:
        return tuple(
            RequestRecord(
                int(r.request_id),
                float(r.arrival_s) * 1e6,
                int(r.prompt_tokens),
                int(r.output_tokens),
                int(r.max_tokens),
                str(reason) not in LENGTH_STOPS,
            )
            for r, reason in zip(requests.itertuples(), reasons, strict=True)
        )
    except ValueError as error:
        raise PredictError(f"{where}: requests.csv: {error}") from None


def _engine_shape(meta: dict[str, Any], where: str) -> EngineShape:
    engine = meta.get("config", {}).get("engine")
    if not isinstance(engine, dict):
        raise PredictError(f"{where}: run.json has no config.engine (not a reference-engine run)")
    try:
        budget = engine.get("max_num_batched_tokens")
        return EngineShape(
            int(engine["max_num_seqs"]),
            int(engine["max_model_len"]),
            int(engine["max_prefill_tokens"]),
            None if budget is None else int(budget),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PredictError(f"{where}: run.json config.engine: {error}") from None
