"""One interface for streams, events and async copies, on CUDA and on CPU.

The engine enqueues device work with `submit`, marks points in the work with `record`,
and blocks the host only in `wait`. On CUDA that is a stream, CUDA events and
`non_blocking` copies from pinned memory. On CPU a worker thread plays the stream: work
runs asynchronously in submission order, markers are timestamps the worker passes, so an
overlap schedule really overlaps on CPU and async hazards show up in CPU tests.
"""

from __future__ import annotations

import abc
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from reference_engine.config import ConfigError


class Marker(abc.ABC):
    """A point in the device work stream; its timestamp is known once the device passed it."""

    @abc.abstractmethod
    def done(self) -> bool: ...


class Device(abc.ABC):
    """Where the model runs: a compute stream, markers on it, and pinned host memory."""

    kind: str
    torch_device: torch.device
    dtype: torch.dtype

    def __init__(self) -> None:
        self.host_waits: Counter[str] = Counter()  # host blocks, by reason

    @abc.abstractmethod
    def submit(self, work: Callable[[], None]) -> None:
        """Enqueue `work` (device ops) on the compute stream; returns without waiting."""

    @abc.abstractmethod
    def record(self) -> Marker:
        """Enqueue a marker after all work submitted so far (completion only: step times
        come from the device clock stamps of the step's own first and last op)."""

    def wait(self, marker: Marker, reason: str) -> None:
        """Block the host until the device passed `marker`; counted per `reason`."""
        self.host_waits[reason] += 1
        self._wait(marker)

    @abc.abstractmethod
    def _wait(self, marker: Marker) -> None: ...

    def synchronize(self) -> None:
        """Wait for all submitted work (run boundaries only, never inside a loop)."""
        self.wait(self.record(), "synchronize")

    def pinned(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Host memory the device can copy to and from asynchronously."""
        return torch.zeros(shape, dtype=dtype, pin_memory=self.kind == "cuda")

    def close(self) -> None:  # noqa: B027 - optional hook; CUDA has nothing to release
        """Release threads and streams."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.kind}


class CudaMarker(Marker):
    """A CUDA event as a marker (recorded on a stream, or by a graph replay)."""

    def __init__(self, event: torch.cuda.Event) -> None:
        self.event = event

    def done(self) -> bool:
        return self.event.query()


class CudaDevice(Device):
    """A CUDA device with one dedicated compute stream."""

    kind = "cuda"

    def __init__(self, index: int = 0, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.torch_device = torch.device("cuda", index)
        self.dtype = dtype
        torch.cuda.set_device(self.torch_device)
        self.stream = torch.cuda.Stream(self.torch_device)

    def submit(self, work: Callable[[], None]) -> None:
        with torch.cuda.stream(self.stream):
            work()

    def record(self) -> Marker:
        # without timing: CUDA completes and reports such an event sooner
        event = torch.cuda.Event(enable_timing=False)
        event.record(self.stream)
        return CudaMarker(event)

    def _wait(self, marker: Marker) -> None:
        marker.event.synchronize()  # type: ignore[attr-defined]

    def describe(self) -> dict[str, Any]:
        props = torch.cuda.get_device_properties(self.torch_device)
        return {"kind": "cuda", "name": props.name, "memory_gib": props.total_memory / 2**30}


class _CpuMarker(Marker):
    def __init__(self) -> None:
        self.passed = threading.Event()

    def done(self) -> bool:
        return self.passed.is_set()


def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class CpuDevice(Device):
    """The CPU, with a worker thread as its stream: work runs in order, asynchronously.

    The worker stands for separate hardware, so it must not take the host thread's core:
    torch's intra-op threads are set to the cores available minus one (at least one) while
    the device lives. On 2 cores that is one thread: 64 requests x 64 tokens of the tiny
    ERNIE model at once, 4 runs each, gave 596-1111 tok/s in sync mode against 388-436
    with torch's default of 2 threads, whose second thread competed with the host's loop."""

    kind = "cpu"

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.torch_device = torch.device("cpu")
        self.dtype = dtype
        self.cores = available_cores()
        self.threads = max(1, self.cores - 1)
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, name="stepgap-cpu-stream", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        torch.set_num_threads(self.threads)  # this thread's OpenMP team, too
        while (work := self._queue.get()) is not None:
            if self._error is None or isinstance(work, _Pass):
                try:
                    work()
                except BaseException as error:
                    self._error = error

    def submit(self, work: Callable[[], None]) -> None:
        self._raise_pending()
        self._queue.put(work)

    def record(self) -> Marker:
        marker = _CpuMarker()
        self._queue.put(_Pass(marker))
        return marker

    def _wait(self, marker: Marker) -> None:
        marker.passed.wait()  # type: ignore[attr-defined]
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)
        torch.set_num_threads(self._threads_before)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "cpu",
            "name": "cpu",
            "cores": self.cores,
            "worker_threads": self.threads,
            "host_threads": 1,
            "threads_note": "the worker thread (the device) runs torch on cores - 1 threads; "
            "the host thread keeps a core of its own",
        }


class _Pass:
    """Worker item that passes a marker; it runs even after an error so waits return."""

    def __init__(self, marker: _CpuMarker) -> None:
        self.marker = marker

    def __call__(self) -> None:
        self.marker.passed.set()


def check_device(name: str) -> None:
    """Raise a one-line ConfigError unless `name` is a device this machine has."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA GPU is available")


def make_device(name: str = "auto") -> Device:
    """`auto` picks CUDA when available; bf16 on CUDA, fp32 on CPU."""
    check_device(name)
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return CudaDevice()
    return CpuDevice()
