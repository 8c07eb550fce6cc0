"""Run a workload on the reference engine under one or more schedules: the library
function behind `stepgap run`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from reference_engine import MODES, ConfigError, Engine, EngineConfig, RunInterrupted, RunOutput
from reference_engine.device import check_device
from reference_engine.engine import Mode, StepRecord
from reference_engine.parallel.failure import RankFailed
from reference_engine.parallel.shapes import check_tensor_parallel
from stepgap import environment, metrics, rank_metrics
from stepgap.footprint import Footprint, Shape, check_fits, estimate, host_available_bytes
from stepgap.goodput import GoodputSLO
from stepgap.instrument import NvtxProbe
from stepgap.interrupts import deferred_interrupts
from stepgap.profiling import StepWindowProfiler
from stepgap.runs import RunData
from stepgap.workloads import Workload

MAX_WARMUP_STEPS = 1_000_000
Tables = dict[int, pd.DataFrame]  # by rank
MAX_PROFILE_STEPS = 100_000


@dataclass(frozen=True)
class RunConfig:
    """What `stepgap run` does: a workload, the schedules, and how to measure them."""

    workload: Workload
    modes: tuple[Mode, ...] = MODES
    device: str = "auto"
    cuda_graphs: bool = True
    instrument: bool = True
    profile_steps: int = 0  # >0: PyTorch-profile this many decode steps after warm-up
    warmup_steps: int = metrics.DEFAULT_WARMUP_STEPS
    engine_seed: int = 0
    max_prefill_tokens: int = 8192
    goodput: GoodputSLO | None = None  # SLOs of request_goodput (vllm bench serve --goodput)
    tensor_parallel: int | None = None  # ranks; None: the workload's
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ConfigError(
                f"unknown mode {bad[0] if bad else ''!r}; choose sync, overlap or both"
            )
        if not 0 <= self.warmup_steps <= MAX_WARMUP_STEPS:
            raise ConfigError(f"warmup_steps must be in [0, {MAX_WARMUP_STEPS}]")
        if not 0 <= self.profile_steps <= MAX_PROFILE_STEPS:
            raise ConfigError(f"profile_steps must be in [0, {MAX_PROFILE_STEPS}]")
        check_device(self.device)
        check_tensor_parallel(self.workload.model_config(), self.tp)

    @property
    def tp(self) -> int:
        """Tensor-parallel ranks: `--tp`, else the workload's."""
        return (
            self.workload.tensor_parallel if self.tensor_parallel is None else self.tensor_parallel
        )

    def check_devices(self) -> None:
        """One GPU per rank: a one-line ConfigError before anything is built."""
        from reference_engine.parallel.team import check_devices

        check_devices(self.tp, self.device_kind)

    @property
    def device_kind(self) -> str:
        """`cuda` or `cpu`, as the engine will pick it."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def shape(self) -> Shape:
        w = self.workload
        return Shape(
            w.model_config(),
            w.concurrency,
            w.max_model_len,
            max(self.max_prefill_tokens, w.input_len),
            w.input_len,
            w.num_requests,
            w.output_len,
        )

    def check_memory(self) -> Footprint:
        """Refuse, with the numbers, a run the device's memory cannot hold (before any
        allocation: a 40 GB model is not built to find out); else its estimated footprint,
        per rank under tensor parallelism."""
        kind = self.device_kind
        dtype = "bfloat16" if kind == "cuda" else "float32"
        footprint = estimate(self.shape(), dtype, self.tp)
        device_free = torch.cuda.mem_get_info()[0] if kind == "cuda" else host_available_bytes()
        check_fits(footprint, kind, device_free, host_available_bytes(), self.tp)
        return footprint

    def engine_config(self) -> EngineConfig:
        w = self.workload
        return EngineConfig(
            model=w.model_config(),
            max_num_seqs=w.concurrency,
            max_model_len=w.max_model_len,
            max_prefill_tokens=max(self.max_prefill_tokens, w.input_len),
            max_num_batched_tokens=w.max_num_batched_tokens,
            device=self.device,
            cuda_graphs=self.cuda_graphs,
            seed=self.engine_seed,
            tensor_parallel=self.tp,
        )


class PartialRun(Exception):
    """Ctrl-C, or a tensor-parallel rank that died or hung, during a run: `.runs` holds
    every run measured so far (the last one possibly incomplete); empty when it came before
    any measurement. `.reason`: the rank's one-line failure; None for Ctrl-C."""

    def __init__(self, runs: list[RunData], reason: str | None = None) -> None:
        super().__init__(reason or "interrupted")
        self.runs, self.reason = runs, reason


def run_workload(config: RunConfig, progress: Callable | None = None) -> list[RunData]:
    """Build the engine once, run the workload under each schedule, return the runs.

    `progress(mode, finished_requests, total_requests)` is called after every step.
    """
    config.check_devices()
    config.check_memory()
    probe = NvtxProbe(enabled=config.instrument)
    try:
        engine = Engine(config.engine_config(), probe)
    except KeyboardInterrupt:
        raise PartialRun([]) from None
    except RankFailed as failed:  # a rank died while the ranks started
        raise PartialRun([], str(failed)) from None
    runs: list[RunData] = []
    try:
        _warm_up(engine, config.workload)
        for mode in config.modes:
            runs.append(_run_mode(engine, config, mode, probe, progress))
    except PartialRun as partial:
        raise PartialRun(runs + partial.runs, partial.reason) from None
    except KeyboardInterrupt:  # between the engine's loops: nothing half-measured
        raise PartialRun(runs) from None
    finally:
        engine.close()
    return runs


def _warm_up(engine: Engine, workload: Workload) -> None:
    """A short unmeasured run so one-time costs (allocator, kernel selection) stay out."""
    short = workload.with_overrides(
        num_requests=min(workload.concurrency, workload.num_requests, 4),
        output_len=min(workload.output_len, 4),
        arrival="all",
    )
    try:
        engine.run(short.requests(), "sync")
    except RunInterrupted:
        raise PartialRun([]) from None
    except RankFailed as failed:
        raise PartialRun([], str(failed)) from None


def _run_mode(engine, config: RunConfig, mode: Mode, probe: NvtxProbe, progress) -> RunData:
    requests = config.workload.requests()
    profiler = StepWindowProfiler(
        config.profile_steps, config.warmup_steps, probe, engine.device.kind
    )

    def on_step(record: StepRecord) -> None:
        profiler.on_step(record)
        if progress is not None:
            progress(mode, sum(r.finished for r in requests), len(requests))

    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    failure = None
    try:
        output = engine.run(requests, mode, on_step)
    except RunInterrupted as interrupted:
        output = interrupted.output
    except RankFailed as failed:  # kept as measured, marked incomplete with the reason
        if failed.output is None:
            raise PartialRun([], str(failed)) from None
        output, failure = failed.output, str(failed)
    with deferred_interrupts(raise_on_exit=False) as deferred:  # a measured run is kept
        profiler.export()
        run = to_run_data(output, engine, config, probe, started, profiler, failure)
    if deferred.received or not output.complete:
        raise PartialRun([run], failure)
    return run


def to_run_data(
    output: RunOutput,
    engine: Engine,
    config: RunConfig,
    probe: NvtxProbe,
    started: str,
    profiler: StepWindowProfiler | None = None,
    failure: str | None = None,
) -> RunData:
    """Turn an engine run into tables + metadata (the saved form). `failure`: why a
    tensor-parallel run stopped (a rank died or hung)."""
    phases = metrics.phase_table(probe.spans)
    steps = metrics.step_table(output, phases)
    requests = metrics.request_table(output)
    tokens = {r.request_id: list(r.output) for r in output.requests}
    margins = {r.request_id: list(r.margins) for r in output.requests}
    times = {r.request_id: list(r.token_times_s) for r in output.requests}
    summary = metrics.summarize(
        steps, requests, times, tokens, output.wall_s, config.warmup_steps, config.goodput
    )
    rank_steps, rank_phases = _rank_tables(output, steps)
    if rank_steps:
        tables = [steps, *(rank_steps[rank] for rank in sorted(rank_steps))]
        summary |= rank_metrics.rank_summary(tables, config.warmup_steps)
    workload = config.workload
    meta = {
        "name": f"{workload.name}-{output.mode}",
        "mode": output.mode,
        "source": "stepgap-engine",
        "complete": output.complete,
        "started": started,
        "environment": environment.collect(engine.device.describe()),
        "config": {
            "engine": asdict(engine.config) | {"model": asdict(engine.config.model)},
            "instrument": config.instrument,
            "warmup_steps": config.warmup_steps,
            "profile_steps": config.profile_steps,
            "dtype": str(engine.device.dtype).removeprefix("torch."),
            "tensor_parallel": engine.config.tensor_parallel,
            "goodput_slo": config.goodput.to_dict() if config.goodput else None,
        },
        "workload": workload.describe(),
        "summary": summary,
        "host_waits": output.host_waits,
        # Gaps left out of the gap percentiles; "profiler" ones also out of idle_fraction.
        "excluded_gaps": metrics.excluded_gaps(steps),
        "origin_host_us": output.origin_host_ns / 1e3,
    }
    if not output.complete:
        meta["incomplete_reason"] = failure or "interrupted (Ctrl-C)"
    tp = engine.config.tensor_parallel
    if workload.tensor_parallel != tp:
        meta["notes"] = [f"workload is TP{workload.tensor_parallel}; ran at TP{tp}"]
    run = RunData(meta, steps, requests, tokens, margins, times, phases=phases)
    asked = [r for r in output.requests if r.params.logprobs is not None]
    run.logprobs = {r.request_id: list(r.logprobs) for r in asked}
    run.top_logprobs = {r.request_id: r.top_logprobs for r in asked}  # flat until saved
    run.rank_steps, run.rank_phases = rank_steps, rank_phases
    if profiler is not None and profiler.trace_path is not None:
        run.meta["profile_window"] = list(profiler.window)
        run.trace_path = profiler.trace_path
    return run


def _rank_tables(output: RunOutput, steps: pd.DataFrame) -> tuple[Tables, Tables]:
    """Each follower rank's step table and host phases (tensor parallelism; else empty)."""
    rank_steps: Tables = {}
    rank_phases: Tables = {}
    for table in output.ranks:
        phases = metrics.phase_table(table.phases)
        rank_steps[table.rank] = rank_metrics.rank_step_table(steps, table, phases)
        rank_phases[table.rank] = phases
    return rank_steps, rank_phases
