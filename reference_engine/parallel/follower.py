"""A follower rank: receives rank 0's plans and launches the same device work.

It never schedules: each `StepPlan` carries rank 0's `PreparedStep` and the bytes of its
pinned input tables, which the follower writes into its own pinned buffers of that parity
before launching the step (graph replay or eager) at once. It keeps the double-buffer rule
of rank 0 — before a step reuses an input or output buffer, the step that last used it has
completed — and reads each step's device clock stamps from its own output table, so its
overlap is as free of host syncs as rank 0's. Tokens are sampled on every rank from the
all-gathered logits; a follower's are never read.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reference_engine import heap
from reference_engine.device import CpuDevice, CudaDevice, Device, Marker
from reference_engine.model_runner import ModelRunner, PreparedStep
from reference_engine.parallel import channel
from reference_engine.parallel.channel import Milestone, Pipes, RankError
from reference_engine.parallel.group import Rendezvous, join_group, leave_group
from reference_engine.parallel.plan import FollowerSpec, RunEnd, RunStart, StepPlan
from reference_engine.parallel.processes import become_follower
from reference_engine.parallel.rank_tables import FOLLOWER_PHASES, RankStep, RankSteps
from reference_engine.probe import PhaseSpan

_now = time.perf_counter_ns  # the host clock of the engine's probe


def follower_main(spec: FollowerSpec, progress: Any, pipes: Pipes, parent_pid: int) -> None:
    """A follower process's entry point (spawned by rank 0)."""
    become_follower(parent_pid)
    try:
        Follower.start(spec, progress, pipes).serve()
    except BaseException as error:  # EOFError too: rank 0 is gone
        with contextlib.suppress(OSError, ValueError):
            channel.report(pipes, RankError(spec.rank, _first_line(error)))
        os._exit(1)  # no interpreter teardown: a failed group can hang in it
    leave_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # nothing to tear down: skipping it saves seconds per rank on a busy host


def rank_device(kind: str, rank: int) -> Device:
    """One GPU per rank on CUDA; a CPU rank's device is its own worker thread."""
    return CudaDevice(index=rank) if kind == "cuda" else CpuDevice()


@dataclass(frozen=True)
class Launched:
    """A launched step whose outputs the follower has not read yet."""

    index: int
    prepared: PreparedStep
    timed: bool
    done: Marker


@dataclass
class RunState:
    """One run on a follower: its buffers' last users, its step table and host spans."""

    origin_ns: int = field(default_factory=_now)
    next_index: int = 0
    clock_origin_ns: int | None = None
    inputs: dict[int, Marker] = field(default_factory=dict)  # parity -> last step's marker
    results: dict[int, Launched] = field(default_factory=dict)  # buffer -> last step
    steps: list[RankStep] = field(default_factory=list)
    spans: list[tuple[int, str, int, int]] = field(default_factory=list)
    waits_before: dict[str, int] = field(default_factory=dict)


class Follower:
    """Serves rank 0's messages until `Stop`."""

    def __init__(
        self, rank: int, runner: ModelRunner, pipes: Pipes, progress: Any, stall_at: int | None
    ) -> None:
        self.rank, self.runner, self.device = rank, runner, runner.device
        self.pipes, self.progress, self.stall_at = pipes, progress, stall_at
        self.launched = 0  # steps launched since the engine started (the watchdog's count)
        self.run = RunState()
        self._inputs = [host.inputs.numpy().reshape(-1) for host in runner.host]
        self._prompts = [host.prompt_ids.numpy() for host in runner.host]

    @classmethod
    def start(cls, spec: FollowerSpec, progress: Any, pipes: Pipes) -> Follower:
        """Bring the device up, join the group, build this rank's shard and runner."""
        from reference_engine.engine_config import make_runner

        config = spec.engine_config
        device = rank_device(spec.device_kind, spec.rank)
        channel.report(pipes, Milestone.READY)
        backend = "nccl" if spec.device_kind == "cuda" else "gloo"
        t = spec.timeouts
        rendezvous = Rendezvous(
            spec.port, config.tensor_parallel, backend, t.startup_s, t.collective_s
        )
        tp = join_group(rendezvous, spec.rank, device.torch_device)
        runner = make_runner(config, device, tp)
        channel.report(pipes, Milestone.BUILT)
        return cls(spec.rank, runner, pipes, progress, spec.stall_at_step)

    def serve(self) -> None:
        while True:
            received = _now()
            message = channel.receive_plan(self.pipes)
            if isinstance(message, StepPlan):
                self._step(message, received)
            elif isinstance(message, RunStart):
                self._start(message)
            elif isinstance(message, RunEnd):
                self._end()
            else:  # Stop
                self.device.synchronize()
                self.device.close()
                return

    def _start(self, message: RunStart) -> None:
        """As rank 0 does at a run's start: faults, graphs, drain, clock origin."""
        if self.device.kind == "cuda":
            torch.cuda.set_sync_debug_mode(message.sync_debug)
        self.runner.plant_faults(message.faults)
        self.runner.prepare_run(message.timed, message.logprobs, message.mixed_steps)
        self.device.synchronize()
        self.run = RunState(waits_before=dict(self.device.host_waits))
        self.runner.start_clock()
        heap.freeze()  # as rank 0 does for its loop: no full GC walking the model mid-run

    def _step(self, plan: StepPlan, received_ns: int) -> None:
        run, prepared = self.run, plan.prepared
        index = run.next_index
        run.next_index += 1
        if index == self.stall_at:  # testing only: a hung rank
            time.sleep(3600)
        spans = [received_ns, _now()]
        self._reuse(prepared)
        spans.append(_now())
        self._write(plan)
        spans.append(_now())
        self.runner.launch(prepared, plan.timed)
        done = self.device.record()
        spans.append(_now())
        self.launched += 1
        self.progress[self.rank] = self.launched
        run.inputs[prepared.parity] = done
        run.results[prepared.results] = Launched(index, prepared, plan.timed, done)
        for phase, (start, end) in zip(FOLLOWER_PHASES, itertools.pairwise(spans), strict=True):
            run.spans.append((index, phase, start, end))

    def _reuse(self, prepared: PreparedStep) -> None:
        """Before writing a step's inputs and outputs: the buffers' last users completed
        (rank 0 waited on them too), and the last output's clock stamps are read."""
        run = self.run
        inputs = run.inputs.get(prepared.parity)
        if inputs is not None:
            self.device.wait(inputs, "buffer_reuse")
        launched = run.results.pop(prepared.results, None)
        if launched is not None:
            if launched.done is not inputs:
                self.device.wait(launched.done, "buffer_reuse")
            self._read(launched)

    def _write(self, plan: StepPlan) -> None:
        parity = plan.prepared.parity
        self._inputs[parity][:] = np.frombuffer(plan.inputs, dtype=np.int64)
        n = plan.prepared.prompt_tokens
        if n:
            self._prompts[parity][:n] = np.frombuffer(plan.prompt_ids, dtype=np.int64)

    def _read(self, launched: Launched) -> None:
        run, nan = self.run, float("nan")
        if not launched.timed:
            run.steps.append(RankStep(launched.index, nan, nan))
            return
        if run.clock_origin_ns is None:
            run.clock_origin_ns = self.runner.clock_origin_ns()
        start, end = self.runner.outputs(launched.prepared).clock_stamps_ns
        origin = run.clock_origin_ns
        run.steps.append(RankStep(launched.index, (start - origin) / 1e3, (end - origin) / 1e3))

    def _end(self) -> None:
        """Drain, read the last outputs, send the run's table to rank 0."""
        heap.thaw()
        self.device.synchronize()
        run = self.run
        for launched in sorted(run.results.values(), key=lambda item: item.index):
            self._read(launched)
        run.results.clear()
        waits = self.device.host_waits
        origin = run.origin_ns
        table = RankSteps(
            self.rank,
            tuple(sorted(run.steps, key=lambda s: s.step)),
            tuple(PhaseSpan(i, phase, a - origin, b - origin) for i, phase, a, b in run.spans),
            {k: waits[k] - run.waits_before.get(k, 0) for k in waits},
        )
        channel.report(self.pipes, table)
        if self.device.kind == "cuda":
            torch.cuda.set_sync_debug_mode(0)  # rank 0's mode held for the run only


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
