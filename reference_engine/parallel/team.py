"""Rank 0's view of the other ranks: starting them, talking to them, failing, closing.

Every wait here is bounded (`plan.Timeouts`) and watched: a follower that exits during
start-up fails the start within the watchdog's poll, not after the start-up bound.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import time
from typing import Any

import torch

from reference_engine.config import ConfigError
from reference_engine.device import Device
from reference_engine.parallel import channel
from reference_engine.parallel.channel import Milestone, RankError
from reference_engine.parallel.failure import RankFailed
from reference_engine.parallel.group import (
    Rendezvous,
    TensorParallel,
    abort_group,
    join_group,
    leave_group,
    master_store,
)
from reference_engine.parallel.plan import FollowerSpec, Message, Stop, Timeouts
from reference_engine.parallel.processes import FollowerHandle, kill_all, spawn_follower, stop_all
from reference_engine.parallel.rank_tables import RankSteps
from reference_engine.parallel.watchdog import POLL_S, Watchdog

DIAGNOSE_S = 2.0  # after a collective failed: how long to wait for the watchdog's reason


def check_devices(size: int, device_kind: str) -> None:
    """One GPU per rank: refuse a TP larger than the GPUs present (one-line ConfigError)."""
    present = torch.cuda.device_count() if device_kind == "cuda" else size
    if present < size:
        raise ConfigError(f"tensor_parallel {size} needs {size} GPUs; {present} present")


class Team:
    """The followers of rank 0 and its own place in the group (`tp`)."""

    def __init__(self, followers: list[FollowerHandle], progress: Any, timeouts: Timeouts):
        self.followers, self.progress, self.timeouts = followers, progress, timeouts
        self._tp: TensorParallel | None = None
        self.backend = "gloo"
        self.watchdog = Watchdog(followers, progress, timeouts.hang_s, self.fail)
        self.closed = False
        atexit.register(self.kill)

    @classmethod
    def start(
        cls, engine_config: Any, device: Device, timeouts: Timeouts, stall: dict[int, int]
    ) -> Team:
        """Spawn ranks 1..N-1, wait until each is ready, and join the group with them.
        `stall` (testing only): rank -> the step at which it stops launching."""
        from reference_engine.parallel.follower import follower_main

        size = engine_config.tensor_parallel
        check_devices(size, device.kind)
        store = master_store(size, timeouts.startup_s)
        progress = mp.get_context("spawn").RawArray("q", size)
        followers = []
        for rank in range(1, size):
            spec = FollowerSpec(
                engine_config, rank, store.port, device.kind, timeouts, stall.get(rank)
            )
            followers.append(spawn_follower(rank, follower_main, spec, progress))
        team = cls(followers, progress, timeouts)
        team.backend = "nccl" if device.kind == "cuda" else "gloo"
        team.watchdog.start()
        try:
            team.await_milestone(Milestone.READY)
            rendezvous = Rendezvous(
                store.port, size, team.backend, timeouts.startup_s, timeouts.collective_s
            )
            team._tp = join_group(rendezvous, 0, device.torch_device, store)
        except BaseException:
            team.close()
            raise
        return team

    @property
    def tp(self) -> TensorParallel:
        """Rank 0's place in the group (once `start` joined it)."""
        if self._tp is None:
            raise RuntimeError("the tensor-parallel team has not joined its group")
        return self._tp

    # -- talking ---------------------------------------------------------------------
    def send(self, message: Message) -> None:
        channel.send_all([f.pipes for f in self.followers], message)

    def await_milestone(self, milestone: Milestone) -> None:
        """Every follower reached `milestone` (start-up bound), else RankFailed."""
        for follower in self.followers:
            got = self._await_report(follower, self.timeouts.startup_s, f"{milestone}")
            if got != milestone:
                raise RankFailed(f"tensor-parallel rank {follower.rank} sent {got!r}")

    def collect(self) -> list[RankSteps]:
        """Every follower's table of the run that just ended (hang bound)."""
        tables = [
            self._await_report(f, self.timeouts.hang_s, "its step table") for f in self.followers
        ]
        if not all(isinstance(t, RankSteps) for t in tables):
            raise RankFailed(f"tensor-parallel ranks sent {tables!r} for their tables")
        return tables

    def _await_report(self, follower: FollowerHandle, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                got = channel.poll_report(follower.pipes, POLL_S)
            except (EOFError, OSError) as error:  # it exited: the watchdog says how
                raise RankFailed(self.diagnose(error)) from None
            if isinstance(got, RankError):
                self.fail()
                raise RankFailed(f"tensor-parallel rank {got.rank} failed: {got.message}")
            if got is not None:
                return got
            if self.watchdog.failure is not None:
                raise RankFailed(self.reason())
        self.fail()
        raise RankFailed(
            f"tensor-parallel rank {follower.rank} sent no {what} within {timeout_s:g} s"
        )

    # -- failing ---------------------------------------------------------------------
    @property
    def failed(self) -> bool:
        return self.watchdog.failure is not None

    def fail(self) -> None:
        """Stop every follower now (the watchdog calls it, or a failed wait)."""
        kill_all(self.followers)
        if self.backend == "nccl":
            abort_group()

    def diagnose(self, error: BaseException) -> str:
        """Why a run failed, once a collective or a pipe raised `error`: the watchdog's
        reason (given `DIAGNOSE_S` to find one), else rank 0's own error."""
        deadline = time.monotonic() + DIAGNOSE_S
        while self.watchdog.failure is None and time.monotonic() < deadline:
            time.sleep(POLL_S / 4)
        if self.watchdog.failure is None:
            self.watchdog.failure = f"tensor-parallel rank 0 failed: {_first_line(error)}"
            self.fail()
        return self.reason()

    def reason(self) -> str:
        """The failure in one line, with a follower's last words when it left some."""
        words = [r for f in self.followers if isinstance(r := _last_words(f), RankError)]
        extra = f" (rank {words[0].rank}: {words[0].message})" if words else ""
        return f"{self.watchdog.failure} (rank 0 at step {self.watchdog.step}){extra}"

    # -- closing ---------------------------------------------------------------------
    def close(self) -> None:
        """Tell the followers to stop, reap them (killing stragglers), leave the group."""
        if self.closed:
            return
        self.closed = True
        self.watchdog.stop()
        if not self.failed and self._tell_followers_to_stop():
            leave_group()  # with the followers, which leave on Stop: NCCL's teardown waits for all
        else:  # a rank is gone and will never leave: do not wait for it
            abort_group()
        stop_all(self.followers)
        leave_group()  # after an abort: the group's state, so that a new group may start
        for follower in self.followers:
            follower.pipes.plans.close()
            follower.pipes.reports.close()
        atexit.unregister(self.kill)

    def _tell_followers_to_stop(self) -> bool:
        try:
            self.send(Stop())
        except OSError:  # a follower's pipe is closed: it is gone
            return False
        return True

    def kill(self) -> None:
        kill_all(self.followers)


def _last_words(follower: FollowerHandle) -> Any:
    try:
        return channel.poll_report(follower.pipes, 0.0)
    except (OSError, EOFError):
        return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
