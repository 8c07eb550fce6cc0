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

import torch

from reference_engine.config import ConfigError
from reference_engine.device import Device, make_device
from reference_engine.engine_config import MODES, EngineConfig, Mode, make_runner
from reference_engine.faults import Fault
from reference_engine.heap import frozen_heap
from reference_engine.jitter import ScheduleJitter
from reference_engine.probe import Probe
from reference_engine.request import Request
from reference_engine.run_output import (
    RequestFeed,
    RunInterrupted,
    RunOutput,
    StepRecord,
)
from reference_engine.scheduler import ScheduledStep, Scheduler

__all__ = [
    "MODES",
    "Engine",
    "EngineConfig",
    "Mode",
    "RequestFeed",
    "RunInterrupted",
    "RunOutput",
    "StepRecord",
    "make_runner",
]


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
            with frozen_heap():  # no full GC walking the model and imports mid-run
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
