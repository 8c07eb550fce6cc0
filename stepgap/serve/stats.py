"""The server's live figures: slots, queues, requests, and the engine's step gaps.

Per engine step (on the engine thread): the host step time, the loop's wall time from one
completed step to the next, as TensorRT-LLM's `hostStepTimeMS` (per-loop CPU wall); the
device step time of the step just completed (its first to last device op), as
`prevDeviceStepTimeMS` (under the overlap schedule it describes the previous loop's step);
and the gap, device idle between that step and the one before (see
tensorrt_llm/executor/base_worker.py, `_stats_serializer`). Figures that include waiting
for requests (the engine idle) are left out. Read from the HTTP thread under a lock.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from reference_engine.engine import StepRecord
from reference_engine.request import FinishReason
from reference_engine.scheduler import Scheduler

WINDOW_STEPS = 1024
QUANTILES = (0.5, 0.9, 0.99)
BUCKETS_MS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Window:
    """One figure: a histogram since the start, and the last `WINDOW_STEPS` values."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=WINDOW_STEPS)
        self.buckets = [0] * len(BUCKETS_MS)
        self.total = 0.0
        self.count = 0
        self.last = math.nan

    def add(self, value: float) -> None:
        if math.isnan(value):
            return
        self.recent.append(value)
        bucket = bisect.bisect_left(BUCKETS_MS, value)  # the first bound >= value
        if bucket < len(BUCKETS_MS):
            self.buckets[bucket] += 1
        self.total += value
        self.count += 1
        self.last = value

    def summary(self) -> Summary:
        ordered = sorted(self.recent)
        picks = {q: _quantile(ordered, q) for q in QUANTILES}
        cumulative = dict(zip(BUCKETS_MS, itertools.accumulate(self.buckets), strict=True))
        return Summary(picks, cumulative, self.total, self.count, self.last, sum(ordered))


@dataclass(frozen=True)
class Summary:
    """A figure as /metrics shows it: recent quantiles, cumulative buckets (le -> count)."""

    quantiles: dict[float, float]
    buckets: dict[float, int]
    total: float
    count: int
    last: float
    window_total: float


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Snapshot:
    """Everything `/metrics` shows, read at one instant."""

    running: int
    waiting: int
    open_requests: int
    steps: int
    tokens: int
    outcomes: dict[str, int]
    host_ms: Summary
    device_ms: Summary
    gap_ms: Summary
    healthy: bool

    @property
    def idle_fraction(self) -> float:
        """Device idle share over the recent steps: Σ gap / (Σ gap + Σ busy)."""
        span = self.gap_ms.window_total + self.device_ms.window_total
        return self.gap_ms.window_total / span if span > 0 else math.nan


class LiveStats:
    """Counters and step windows, written by the engine thread and the HTTP handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host, self._device, self._gap = Window(), Window(), Window()
        self._outcomes: Counter[str] = Counter()
        self._running = self._waiting = self._open = self._steps = self._tokens = 0
        self._healthy = True
        self._last_ns: int | None = None
        self._prev_end_us = math.nan
        self._idle = True

    # -- engine thread -----------------------------------------------------------------
    def begin_run(self) -> None:
        """A new engine run: its device clock starts anew, so no gap spans the boundary."""
        self._last_ns, self._prev_end_us, self._idle = None, math.nan, True

    def mark_idle(self) -> None:
        """The engine waits for requests: the next step's host time and gap include that."""
        self._idle = True

    def occupancy(self, scheduler: Scheduler | None) -> None:
        running = sum(r is not None for r in scheduler.slots) if scheduler else 0
        waiting = len(scheduler.pending) + len(scheduler.waiting) if scheduler else 0
        self._running, self._waiting = running, waiting

    def observe(self, record: StepRecord, tokens: int) -> None:
        now = time.perf_counter_ns()
        start, end = record.device_start_us, record.device_end_us
        host = math.nan if self._idle or self._last_ns is None else (now - self._last_ns) / 1e6
        gap = math.nan if self._idle else (start - self._prev_end_us) / 1e3
        with self._lock:
            self._host.add(host)
            self._device.add((end - start) / 1e3)
            self._gap.add(gap)
            self._steps += 1
            self._tokens += tokens
        self._last_ns, self._prev_end_us, self._idle = now, end, False

    def count_request(self, reason: FinishReason | None) -> None:
        with self._lock:
            self._outcomes[reason.value if reason else "failed"] += 1

    def set_healthy(self, healthy: bool) -> None:
        self._healthy = healthy

    # -- HTTP handlers -----------------------------------------------------------------
    def request_opened(self) -> None:
        with self._lock:
            self._open += 1

    def request_closed(self) -> None:
        with self._lock:
            self._open -= 1

    def count_rejected(self) -> None:
        with self._lock:
            self._outcomes["rejected"] += 1

    @property
    def healthy(self) -> bool:
        return self._healthy

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self._running,
                self._waiting,
                self._open,
                self._steps,
                self._tokens,
                dict(self._outcomes),
                self._host.summary(),
                self._device.summary(),
                self._gap.summary(),
                self._healthy,
            )
