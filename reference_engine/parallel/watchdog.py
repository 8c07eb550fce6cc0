"""Rank 0's lookout for followers that die or hang, so that a run never hangs on them.

A daemon thread waits on the followers' process sentinels: an exit is seen at once (within
`POLL_S` at worst). Every follower counts the steps it launched in shared memory; a
follower still behind rank 0's latest launch `hang_s` after it is hung. Either way the
watchdog records a one-line diagnosis and calls `on_failure` (which kills every follower:
collectives waiting on them then fail at once, and rank 0's loop ends with that line).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

from reference_engine.parallel.processes import FollowerHandle, describe_exit

POLL_S = 0.2


class Watchdog:
    """`progress[rank]`: steps follower `rank` launched since the engine started."""

    def __init__(
        self,
        followers: Sequence[FollowerHandle],
        progress: Sequence[int],
        hang_s: float,
        on_failure: Callable[[], None],
    ) -> None:
        self.followers, self.progress, self.hang_s = list(followers), progress, hang_s
        self.on_failure = on_failure
        self.failure: str | None = None
        self.step = 0  # the step rank 0 is on (for messages)
        self._launched, self._launched_at = 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stepgap-tp-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the engine closes: followers exiting now is no failure)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2 * POLL_S + 1.0)

    def note_launch(self, step: int) -> None:
        """Rank 0 launched its next step (`step`: its index in the run)."""
        self._launched += 1
        self._launched_at = time.monotonic()
        self.step = step

    def _watch(self) -> None:
        sentinels = {f.process.sentinel: f for f in self.followers}
        while not self._stop.is_set():
            exited = wait(list(sentinels), timeout=POLL_S)
            if self._stop.is_set():
                return
            failure = self._dead([sentinels[s] for s in exited]) or self._hung()  # type: ignore[index]
            if failure is not None:
                self.failure = failure
                self.on_failure()
                return

    def _dead(self, exited: list[FollowerHandle]) -> str | None:
        if not exited:
            return None
        for follower in exited:  # its sentinel closes a moment before it can be reaped
            follower.process.join(1.0)
        first = min(exited, key=lambda f: (f.process.exitcode or 0) >= 0)  # signals first
        return f"tensor-parallel rank {first.rank} {describe_exit(first.process)}"

    def _hung(self) -> str | None:
        launched, late = self._launched, time.monotonic() - self._launched_at
        if not launched or late < self.hang_s:
            return None
        behind = [f.rank for f in self.followers if self.progress[f.rank] < launched]
        if not behind:
            return None
        return (
            f"tensor-parallel rank {behind[0]} hung: no launch {late:.1f} s after rank 0's "
            f"(bound {self.hang_s:g} s), killed"
        )
