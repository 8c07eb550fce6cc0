"""A PyTorch profiler window over a range of decode steps (`stepgap run --profile`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from reference_engine.engine import StepRecord
from reference_engine.probe import PROFILER
from stepgap.instrument import NvtxProbe
from stepgap.metrics import DECODE_KINDS


class StepWindowProfiler:
    """Starts the profiler once `skip` decode steps have completed and stops it `steps`
    decode steps later. Starting and stopping pause the host for a while: that time is
    recorded as a `profiler` span, so the gaps it causes stay out of every statistic (gap
    percentiles and idle fraction) and are listed in run.json. The Chrome trace is written
    by `export`, after the run."""

    def __init__(self, steps: int, skip: int, probe: NvtxProbe, device_kind: str) -> None:
        self.steps, self.skip, self.probe = steps, skip, probe
        self.device_kind = device_kind
        self.decode_seen = 0
        self.window: tuple[int, int] = (-1, -1)
        self.trace_path: Path | None = None
        self._profiler: profile | None = None
        self._recording = False

    def on_step(self, record: StepRecord) -> None:
        if self.steps <= 0 or record.step.kind.value not in DECODE_KINDS:
            return
        self.decode_seen += 1
        if self.decode_seen == self.skip + 1 and self._profiler is None:
            with self.probe.phase(PROFILER, record.step.index):
                self._start(record.step.index + 1)
        elif self.decode_seen == self.skip + 1 + self.steps and self._recording:
            with self.probe.phase(PROFILER, record.step.index):
                self.stop(record.step.index)

    def _start(self, first_step: int) -> None:
        activities = [ProfilerActivity.CPU]
        if self.device_kind == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(activities=activities)
        self._profiler.start()
        self._recording = True
        self.probe.profiling = True
        self.window = (first_step, -1)

    def stop(self, last_step: int | None = None) -> None:
        """Stop recording (idempotent; also ends a window the run did not fill)."""
        if not self._recording:
            return
        self.probe.profiling = False
        if self.device_kind == "cuda":
            torch.cuda.synchronize()
        self._profiler.stop()  # type: ignore[union-attr]
        self._recording = False
        self.window = (self.window[0], last_step if last_step is not None else -1)

    def export(self) -> None:
        """Write the recorded window as a gzipped Chrome trace (after the run: slow)."""
        self.stop()
        if self._profiler is None:
            return
        fd, name = tempfile.mkstemp(prefix="stepgap-trace-", suffix=".json.gz")
        os.close(fd)
        self._profiler.export_chrome_trace(name)
        self.trace_path = Path(name)
        self._profiler = None
