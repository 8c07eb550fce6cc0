"""Run verification cases on the reference engine: seeds x workloads x model families, the
engine clean or with a planted fault, with or without schedule jitter.

Per case: a stop-free sync run on a clean, calm engine fixes each request's tokens (the
reference); the same mix with stop ids and a common EOS then runs under sync and overlap on
an engine built with the fault (planted in its overlap loop only) and the case's jitter
seed; `stepgap.verify.checks` judges the three runs.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from reference_engine import (
    ConfigError,
    Engine,
    EngineConfig,
    Request,
    RunInterrupted,
    model_config,
)
from reference_engine.engine import Mode
from reference_engine.faults import FAULT_INFO, Fault
from reference_engine.jitter import JITTER_LEVELS, Jitter
from reference_engine.run_output import RunOutput
from stepgap.mixes import common_token, fresh, with_stops, without_stops
from stepgap.verify.cases import FAMILIES, WORKLOADS, Case, expand_cases, workload
from stepgap.verify.checks import Evidence, Finding, run_checks
from stepgap.verify.trace import RunTrace, failed_run, trace_run

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class VerifyConfig:
    """What `stepgap verify` runs. `jitter` is the level's parameters (each case draws with
    its own seed); `fault` is planted in the overlap loop of the engine under test."""

    families: tuple[str, ...] = FAMILIES
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    jitter: Jitter | None = JITTER_LEVELS["heavy"]
    fault: Fault | None = None
    device: str = "auto"
    cuda_graphs: bool = True
    margin_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not self.families or not self.workloads or not self.seeds:
            raise ConfigError("verify needs at least one family, workload and seed")
        for family in self.families:
            model_config(family)  # raises ConfigError for an unknown preset
        for name in self.workloads:
            workload(name)
        if min(self.seeds) < 0:
            raise ConfigError("seeds must be >= 0")
        if not 0.0 <= self.margin_tolerance < 1.0:
            raise ConfigError(f"margin tolerance must be in [0, 1), got {self.margin_tolerance}")
        if self.fault is not None:
            exercising(self.workloads, self.fault)  # refused here, before any run

    def cases(self) -> list[Case]:
        """Every (family, workload, seed); with a fault, only the workloads it can show in."""
        workloads = self.workloads if self.fault is None else exercising(self.workloads, self.fault)
        return expand_cases(self.families, workloads, self.seeds)

    @property
    def jitter_label(self) -> str:
        """`off`, the name of a `JITTER_LEVELS` preset, or `custom`."""
        if self.jitter is None:
            return "off"
        return next((n for n, j in JITTER_LEVELS.items() if j == self.jitter), "custom")


@dataclass(frozen=True)
class CaseResult:
    """The checks' findings on one case, per check (empty lists: the check held)."""

    case: Case
    fault: Fault | None
    findings: dict[str, list[Finding]]
    wall_s: float
    jitter: Jitter | None = None  # as applied: the case's seed, stretched to the device's step

    @property
    def jitter_seed(self) -> int | None:
        return self.jitter.seed if self.jitter is not None else None

    @property
    def passed(self) -> bool:
        return not any(self.findings.values())

    @property
    def first(self) -> Finding | None:
        """The earliest violation (lowest step; at a tie, the root-cause-most check)."""
        every = [f for found in self.findings.values() for f in found]
        return min(every, key=Finding.sort_key) if every else None


@dataclass(frozen=True)
class VerifyResult:
    """All cases of one configuration."""

    config: VerifyConfig
    cases: list[CaseResult]
    device: dict
    wall_s: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    def failures(self, check: str) -> list[CaseResult]:
        return [c for c in self.cases if c.findings.get(check)]

    def first_failure(self) -> tuple[CaseResult, Finding] | None:
        for result in self.cases:
            if result.first is not None:
                return result, result.first
        return None

    def first_checks(self) -> Counter[str]:
        """How often each check was the first to fire in a failing case."""
        return Counter(c.first.check for c in self.cases if c.first is not None)


@dataclass(frozen=True)
class FaultTable:
    """The verifier's self-test: the clean engine, then each fault under each jitter."""

    clean: VerifyResult
    rows: dict[Fault, dict[str, VerifyResult]] = field(default_factory=dict)  # jitter label

    def caught(self, fault: Fault) -> bool:
        """Whether any case, at any jitter level, caught `fault`."""
        return any(not r.passed for r in self.rows[fault].values())

    @property
    def all_caught(self) -> bool:
        return all(self.caught(fault) for fault in self.rows)

    @property
    def wall_s(self) -> float:
        return self.clean.wall_s + sum(r.wall_s for by in self.rows.values() for r in by.values())


@dataclass(frozen=True)
class Reference:
    """A case's request mix and what its stop-free sync run emitted, per request."""

    mix: list[Request]
    tokens: dict[int, list[int]]
    margins: dict[int, list[float]]
    step_us: float  # median device time of its steps: the case's jitter stretches to it


class Verifier:
    """Runs cases; builds each (family, slots) clean engine and each reference run once."""

    def __init__(self, device: str = "auto", cuda_graphs: bool = True, margin_tol=0.0) -> None:
        self.device, self.cuda_graphs, self.margin_tolerance = device, cuda_graphs, margin_tol
        self._plain: dict[tuple[str, int, int | None], Engine] = {}
        self._references: dict[Case, Reference] = {}
        self.device_info: dict = {}

    def close(self) -> None:
        for engine in self._plain.values():
            engine.close()
        self._plain.clear()

    def run_case(self, case: Case, fault: Fault | None, jitter: Jitter | None) -> CaseResult:
        started = time.perf_counter()
        reference = self.reference(case)
        eos = common_token(reference.tokens)
        seeded = None
        if jitter is not None:
            seeded = jitter.stretched_to(reference.step_us).with_seed(case.jitter_seed)
        engine = self._engine(case, eos, fault, seeded)
        stopped = with_stops(reference.mix, reference.tokens, case.seed)
        try:
            sync, overlap = (_traced_run(engine, stopped, mode) for mode in ("sync", "overlap"))
        finally:
            engine.close()
        evidence = Evidence(
            reference.tokens, eos, sync, overlap, self.margin_tolerance, reference.margins
        )
        findings = run_checks(evidence)
        wall_s = time.perf_counter() - started
        return CaseResult(case, fault, findings, wall_s, seeded)

    def reference(self, case: Case) -> Reference:
        """The case's mix and its stop-free run (sync, clean engine, no jitter)."""
        if case not in self._references:
            shape = workload(case.workload)
            key = (case.family, shape.slots, shape.max_num_batched_tokens)
            if key not in self._plain:
                self._plain[key] = self._build(case, model_config(case.family), (), None)
            plain = self._plain[key]
            self.device_info = plain.device.describe() | {
                "dtype": str(plain.device.dtype).removeprefix("torch."),
                "cuda_graphs_captured": plain.runner.graphs is not None,
            }
            mix = shape.requests(case.seed, plain.config.model.vocab_size)
            output = plain.run(without_stops(mix), "sync")
            self._references[case] = Reference(
                mix,
                {r.request_id: r.output for r in output.requests},
                {r.request_id: r.margins for r in output.requests},
                median_step_us(output),
            )
        return self._references[case]

    def _engine(self, case: Case, eos: int, fault: Fault | None, jitter: Jitter | None):
        model = model_config(case.family, eos_token_id=eos)
        return self._build(case, model, (fault,) if fault else (), jitter)

    def _build(self, case: Case, model, faults, jitter) -> Engine:
        shape = workload(case.workload)
        config = EngineConfig(
            model,
            max_num_seqs=shape.slots,
            max_model_len=shape.max_model_len,
            max_num_batched_tokens=shape.max_num_batched_tokens,
            device=self.device,
            cuda_graphs=self.cuda_graphs,
            faults=faults,
            jitter=jitter,
        )
        return Engine(config)


def median_step_us(output: RunOutput) -> float:
    """Median device time of a run's steps, µs (NaN when its steps were not timed)."""
    durations = (r.device_end_us - r.device_start_us for r in output.steps)
    times = [us for us in durations if math.isfinite(us)]
    return statistics.median(times) if times else math.nan


def _traced_run(engine: Engine, requests: list[Request], mode: Mode) -> RunTrace:
    try:
        return trace_run(engine.run(fresh(requests), mode))
    except RunInterrupted:
        raise  # Ctrl-C stops verification; it is not a finding
    except Exception as error:  # a fault may crash the engine: that is a finding, not a crash
        return failed_run(mode, error)


def verify(
    config: VerifyConfig, progress: Progress | None = None, verifier: Verifier | None = None
) -> VerifyResult:
    """Run every case of `config` and check it."""
    own = verifier is None
    verifier = verifier or Verifier(config.device, config.cuda_graphs, config.margin_tolerance)
    started = time.perf_counter()
    cases = config.cases()
    label = f"fault {config.fault}" if config.fault else "clean"
    results = []
    try:
        for done, case in enumerate(cases):
            results.append(verifier.run_case(case, config.fault, config.jitter))
            if progress is not None:
                progress(label, done + 1, len(cases))
    finally:
        if own:
            verifier.close()
    return VerifyResult(config, results, verifier.device_info, time.perf_counter() - started)


def exercising(workloads: tuple[str, ...], fault: Fault) -> tuple[str, ...]:
    """The `workloads` that run the code `fault` changes: a fault in how a prompt's later
    chunks are placed cannot show where every prompt runs whole, so those runs would count
    as misses that no verifier could avoid."""
    if not FAULT_INFO[fault].needs_chunks:
        return workloads
    chunked = tuple(w for w in workloads if workload(w).max_num_batched_tokens)
    if not chunked:
        raise ConfigError(
            f"fault {fault} needs a chunked-prefill workload; choose one of "
            f"{', '.join(w for w in WORKLOADS if workload(w).max_num_batched_tokens)}"
        )
    return chunked


def fault_table(
    config: VerifyConfig,
    faults: Iterable[Fault] = tuple(Fault),
    progress: Progress | None = None,
    verifier: Verifier | None = None,
    clean: VerifyResult | None = None,
) -> FaultTable:
    """The clean engine under `config` (or the `clean` result given), then each fault with
    jitter off and at `config.jitter` (when on): which cases caught it, which check first."""
    planted = {fault: dataclasses.replace(config, fault=fault) for fault in faults}  # checked
    own = verifier is None
    verifier = verifier or Verifier(config.device, config.cuda_graphs, config.margin_tolerance)
    levels: dict[str, Jitter | None] = {"off": None}
    if config.jitter is not None:
        levels[config.jitter_label] = config.jitter
    try:
        if clean is None:
            clean = verify(dataclasses.replace(config, fault=None), progress, verifier)
        rows: dict[Fault, dict[str, VerifyResult]] = {}
        for fault, cases in planted.items():
            rows[fault] = {
                label: verify(dataclasses.replace(cases, jitter=jitter), progress, verifier)
                for label, jitter in levels.items()
            }
    finally:
        if own:
            verifier.close()
    return FaultTable(clean, rows)
