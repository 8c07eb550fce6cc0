"""Follower processes: started by spawn, tied to rank 0's life, killed by id.

A follower ignores Ctrl-C (rank 0 handles it and stops the followers) and, on Linux, asks
the kernel to kill it when the thread that started it dies (PR_SET_PDEATHSIG): a rank 0
killed outright leaves no orphan. Rank 0 also kills its followers at exit (`atexit`) and
whenever a run fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from reference_engine.parallel.channel import Pipes

_PR_SET_PDEATHSIG = 1
JOIN_S = 5.0  # how long a stopping follower may take before it is killed


@dataclass(frozen=True)
class FollowerHandle:
    """Rank 0's handle on one follower: its process and rank 0's ends of its pipes."""

    rank: int
    process: BaseProcess
    pipes: Pipes


def spawn_follower(rank: int, target: Callable[..., None], *args: object) -> FollowerHandle:
    """Start `target(*args, follower_pipes, parent_pid)` in a fresh (spawned) process."""
    ctx = mp.get_context("spawn")
    plans_out, plans_in = ctx.Pipe(duplex=False)  # (reader, writer)
    reports_out, reports_in = ctx.Pipe(duplex=False)
    theirs = Pipes(plans=plans_out, reports=reports_in)
    process = ctx.Process(
        target=target,
        args=(*args, theirs, os.getpid()),
        name=f"stepgap-rank{rank}",
        daemon=True,
    )
    process.start()
    plans_out.close()  # the child holds its own copies
    reports_in.close()
    return FollowerHandle(rank, process, Pipes(plans=plans_in, reports=reports_out))


def become_follower(parent_pid: int) -> None:
    """In a follower: ignore Ctrl-C; die with rank 0."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # rank 0 died before the request took effect
        os._exit(1)


def kill_all(followers: Iterable[FollowerHandle]) -> None:
    """SIGKILL every follower still running, by its own pid, and reap it."""
    followers = list(followers)
    for follower in followers:
        if follower.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                follower.process.kill()
    for follower in followers:
        follower.process.join(JOIN_S)


def stop_all(followers: Iterable[FollowerHandle], timeout_s: float = JOIN_S) -> None:
    """Wait up to `timeout_s` for followers that were told to stop; kill the rest."""
    followers = list(followers)
    deadline = time.monotonic() + timeout_s
    for follower in followers:
        follower.process.join(max(0.0, deadline - time.monotonic()))
    kill_all(followers)


def describe_exit(process: BaseProcess) -> str:
    """'exited with code 1' or 'was killed by SIGKILL'."""
    code = process.exitcode
    if code is None:
        return "is still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
