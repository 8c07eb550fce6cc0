"""The decode engine: continuous batching under a `sync` or an `overlap` schedule.

Both loops are built from the same three helpers — `_schedule`, `_launch`, `_complete` —
and differ only in which step is post-processed when: `sync` completes each step before
scheduling the next; `overlap` launches step N+1 first, then completes step N while the
device runs N+1.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from reference_engine.config import ConfigError, ModelConfig
from reference_engine.device import Device, Marker, make_device
from reference_engine.faults import Fault, parse_faults
from reference_engine.jitter import Jitter, ScheduleJitter
from reference_engine.kernels import KernelBackend
from reference_engine.model_runner import ModelRunner, PreparedStep
from reference_engine.parallel.group import SINGLE, TensorParallel
from reference_engine.parallel.shapes import check_tensor_parallel
from reference_engine.probe import Probe
from reference_engine.request import Request
from reference_engine.scheduler import ScheduledStep, Scheduler

Mode = Literal["sync", "overlap"]
MODES: tuple[Mode, ...] = ("sync", "overlap")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that fixes the engine's shapes and numerics.

    `faults` and `jitter` are testing options, off by default and never for measurements:
    bugs planted in the overlap loop (reference_engine.faults) and seeded schedule jitter
    (reference_engine.jitter), with which `stepgap verify` tests itself and the engine.
    """

    model: ModelConfig
    max_num_seqs: int = 8
    max_model_len: int = 256
    max_prefill_tokens: int = 4096
    max_num_batched_tokens: int | None = None  # set: chunked prefill with this step budget
    device: str = "auto"
    cuda_graphs: bool = True
    kernels: KernelBackend | None = None  # None: Triton kernels on CUDA, torch elsewhere
    seed: int = 0
    faults: tuple[Fault, ...] = ()
    jitter: Jitter | None = None
    tensor_parallel: int = 1  # ranks, a process and a device each (reference_engine.parallel)
    tp_timeout_s: float = 60.0  # a rank this far behind rank 0's latest launch fails the run

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", parse_faults(self.faults))
        if self.jitter is not None and not isinstance(self.jitter, Jitter):
            raise ConfigError(f"jitter must be a Jitter or None, got {self.jitter!r}")
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_model_len < 2:
            raise ConfigError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if self.max_prefill_tokens < 1:
            raise ConfigError(f"max_prefill_tokens must be >= 1, got {self.max_prefill_tokens}")
        budget = self.max_num_batched_tokens
        if budget is not None and budget <= self.max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens ({budget}) must exceed max_num_seqs "
                f"({self.max_num_seqs}): a step holds a full decode batch plus prompt tokens"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        if self.kernels is not None:
            object.__setattr__(self, "kernels", _kernel_backend(self.kernels))
        check_tensor_parallel(self.model, self.tensor_parallel)
        if not 0 < self.tp_timeout_s <= 86_400:
            raise ConfigError(f"tp_timeout_s must be in (0, 86400], got {self.tp_timeout_s}")


def make_runner(
    config: EngineConfig,
    device: Device,
    tp: TensorParallel = SINGLE,
    runner_type: Callable[..., ModelRunner] = ModelRunner,
) -> ModelRunner:
    """The model runner of `config` on `device`: the whole model, or rank `tp.rank`'s shard."""
    return runner_type(
        config.model,
        device,
        config.max_num_seqs,
        config.max_model_len,
        max(config.max_prefill_tokens, config.max_num_batched_tokens or 0),
        seed=config.seed,
        cuda_graphs=config.cuda_graphs,
        kernels=config.kernels,
        tp=tp,
    )


def _kernel_backend(value: KernelBackend | str) -> KernelBackend:
    try:
        return KernelBackend(value)
    except ValueError:
        choices = ", ".join(b.value for b in KernelBackend)
        raise ConfigError(f"unknown kernels {value!r}; choose {choices}") from None


@dataclass
class StepRecord:
    """One launched step; device times (µs from the run's origin marker) are filled in
    once the run is drained."""

    step: ScheduledStep
    prepared: PreparedStep
    timed: bool  # its first and last device op stamp the device clock (instrumentation on)
    done: Marker  # the output copy landed: what the host waits on
    device_start_us: float = float("nan")
    device_end_us: float = float("nan")


@dataclass
class RunOutput:
    """What one run of the engine produced."""

    mode: Mode
    requests: list[Request]
    steps: list[StepRecord] = field(default_factory=list)
    wall_s: float = 0.0
    host_waits: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    origin_host_ns: int = 0  # host clock (probe ns) when the device clock origin was read
    emitted: list[tuple[int, int]] = field(default_factory=list)  # (step, request id) per token
    ranks: list = field(default_factory=list)  # TP: ranks 1.. step tables (parallel.rank_tables)


class RequestFeed(Protocol):
    """Requests that arrive while the engine runs (a server's queue): `Engine.run(feed=)`.

    The engine polls it on its own thread: once per loop iteration before scheduling
    (`wait=False`), and, when nothing can run, with `wait=True` (block until a request
    comes or the feed closes). `poll` hands new requests to `scheduler.add` and cancelled
    ones to `scheduler.abort`. The run returns once `open` is False and all it took in
    finished. `logprobs`: requests may ask for logprobs, so every step computes them.
    """

    open: bool
    logprobs: bool

    def poll(self, scheduler: Scheduler, wait: bool) -> None: ...


class RunInterrupted(Exception):
    """Raised from `Engine.run` on Ctrl-C; `.output` holds what was measured so far."""

    def __init__(self, output: RunOutput) -> None:
        super().__init__("run interrupted")
        self.output = output


class Engine:
    """Builds the model once; `run` replays a list of requests under either schedule."""

    def __init__(self, config: EngineConfig, probe: Probe | None = None) -> None:
        self.config = config
        self.device: Device = make_device(config.device)
        if config.tensor_parallel > 1:  # rank 0 starts the others (reference_engine.parallel)
            from reference_engine.parallel.leader import start_leader

            self.runner = start_leader(config, self.device)
        else:
            self.runner = make_runner(config, self.device)
        self.probe = probe or Probe()
        self.jitter = ScheduleJitter(config.jitter, self.device) if config.jitter else None
        if self.jitter is not None:
            self.probe.on_phase = self.jitter.at_phase
        self._waits_for_outputs = True
        self._feed: RequestFeed | None = None

    def close(self) -> None:
        """Stop the device and give its memory back (a process may build several engines)."""
        self.device.synchronize()
        self.device.close()
        self.runner.close()  # TP: stops the other ranks
        del self.runner  # the model, KV cache and CUDA graph
        if self.device.kind == "cuda":
            gc.collect()
            torch.cuda.empty_cache()

    def run(
        self,
        requests: list[Request],
        mode: Mode,
        on_step: Callable[[StepRecord], None] | None = None,
        feed: RequestFeed | None = None,
    ) -> RunOutput:
        """Serve `requests` (arrival times in seconds from now) under schedule `mode`, and
        those a `feed` brings while it runs."""
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose sync or overlap")
        cfg = self.config
        faults = cfg.faults if mode == "overlap" else ()  # sync stays the clean reference
        scheduler = Scheduler(
            cfg.max_num_seqs,
            cfg.max_model_len,
            cfg.max_prefill_tokens,
            faults,
            cfg.max_num_batched_tokens,
        )
        for request in requests:
            scheduler.add(request)
        self.runner.plant_faults(faults)
        logprobs = any(r.params.logprobs is not None for r in requests)
        logprobs = logprobs or (feed is not None and feed.logprobs)
        mixed = cfg.max_num_batched_tokens is not None
        self.runner.prepare_run(timed=self.probe.enabled, logprobs=logprobs, mixed_steps=mixed)
        self._waits_for_outputs = Fault.MISSING_EVENT_WAIT not in faults
        self._feed = feed
        if self.jitter is not None:
            self.jitter.reset()
        output = RunOutput(mode, requests, emitted=scheduler.emitted)
        self.device.synchronize()
        waits_before = dict(self.device.host_waits)
        self.probe.reset()
        self.runner.start_clock()  # read once the first step completed: no sync here
        self._origin_ns: int | None = None
        output.origin_host_ns = self.probe.now_ns()
        loop = self._sync_loop if mode == "sync" else self._overlap_loop
        try:
            loop(scheduler, output, on_step or (lambda record: None))
            output.complete = True
        except KeyboardInterrupt as interrupt:
            raise RunInterrupted(output) from interrupt
        except Exception as error:
            failure = self.runner.failure(error, output)  # TP: a rank died or hung
            if failure is None:
                raise
            raise failure from error
        finally:
            output.wall_s = self.probe.now_ns() / 1e9
            self.device.synchronize()
            waits = self.device.host_waits
            output.host_waits = {k: waits[k] - waits_before.get(k, 0) for k in waits}
            self._resolve_times(output)
            self.runner.finish_run(output)  # TP: the other ranks' step tables
        return output

    # -- the two schedules -------------------------------------------------------------
    def _sync_loop(self, scheduler: Scheduler, output: RunOutput, on_step) -> None:
        while self._more(scheduler):
            with self.probe.iteration():
                step = self._schedule(scheduler)
                if step is None:
                    self._await_arrival(scheduler)
                    continue
                record = self._launch(step, output)
                self._complete(record, scheduler, on_step)

    def _overlap_loop(self, scheduler: Scheduler, output: RunOutput, on_step) -> None:
        in_flight: StepRecord | None = None
        while self._more(scheduler) or in_flight:
            with self.probe.iteration():
                step = self._schedule(scheduler)
                record = self._launch(step, output) if step else None
                if in_flight:
                    self._complete(in_flight, scheduler, on_step)
                elif record is None:
                    self._await_arrival(scheduler)
                in_flight = record

    # -- shared helpers ----------------------------------------------------------------
    def _more(self, scheduler: Scheduler) -> bool:
        """The run goes on: requests unfinished, or a feed that may still bring some."""
        return scheduler.has_unfinished or (self._feed is not None and self._feed.open)

    def _schedule(self, scheduler: Scheduler) -> ScheduledStep | None:
        with self.probe.phase("schedule", scheduler.num_steps):
            if self._feed is not None:
                self._feed.poll(scheduler, wait=False)
            return scheduler.schedule(self.probe.now_ns() / 1e9)

    def _launch(self, step: ScheduledStep, output: RunOutput) -> StepRecord:
        with self.probe.phase("prepare", step.index):
            prepared = self.runner.prepare(step)
        with self.probe.phase("launch", step.index):
            # Device timers are instrumentation: off with the probe. The host waits on a
            # separate event without timing, which CUDA completes and reports faster; waiting
            # on the timing event instead added ~0.1 ms to every sync step on an H100.
            self.runner.launch(prepared, timed=self.probe.enabled)
            done = self.device.record()
        record = StepRecord(step, prepared, self.probe.enabled, done)
        output.steps.append(record)
        return record

    def _complete(self, record: StepRecord, scheduler: Scheduler, on_step) -> None:
        index = record.step.index
        with self.probe.phase("wait", index):
            if self._waits_for_outputs:  # False only with planted fault MISSING_EVENT_WAIT
                self.device.wait(record.done, "step_output")
        with self.probe.phase("postprocess", index):
            self._read_times(record)  # before step N+2 reuses its output buffer
            outputs = self.runner.outputs(record.prepared)
            now_s = self.probe.now_ns() / 1e9
            scheduler.on_tokens(record.step, outputs, now_s, self.config.model.eos_token_id)
        with self.probe.phase("output", index):
            on_step(record)

    def _await_arrival(self, scheduler: Scheduler) -> None:
        """Nothing can run until the next request arrives: wait for the workload's clock."""
        arrival = scheduler.next_arrival_s()
        if arrival is None and self._feed is not None:
            with self.probe.phase("idle", scheduler.num_steps):
                self._feed.poll(scheduler, wait=True)
            return
        if arrival is None:
            raise RuntimeError("scheduler stalled with unfinished requests and none arriving")
        with self.probe.phase("idle", scheduler.num_steps):
            time.sleep(max(0.0, arrival - self.probe.now_ns() / 1e9))

    def _read_times(self, record: StepRecord) -> None:
        """Device times of a finished step, µs from the run's origin."""
        if record.timed and record.done.done():
            if self._origin_ns is None:
                self._origin_ns = self.runner.clock_origin_ns()
            start_ns, end_ns = self.runner.outputs(record.prepared).clock_stamps_ns
            record.device_start_us = (start_ns - self._origin_ns) / 1e3
            record.device_end_us = (end_ns - self._origin_ns) / 1e3

    def _resolve_times(self, output: RunOutput) -> None:
        """After the drain: times of steps not post-processed (an interrupted run) whose
        output buffer no later step overwrote."""
        reused: set[int] = set()
        for record in reversed(output.steps):
            if math.isnan(record.device_end_us) and record.prepared.results not in reused:
                self._read_times(record)
            reused.add(record.prepared.results)
