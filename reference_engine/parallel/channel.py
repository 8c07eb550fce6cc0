"""The host pipes between rank 0 and each follower: plans down, reports up.

A plan is pickled once and its bytes written to every follower's pipe: no tensor, no
device memory, no synchronisation; a follower blocks only in its own read.
"""

from __future__ import annotations

import enum
import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from reference_engine.parallel.plan import Message, from_wire, to_wire


class Milestone(enum.StrEnum):
    """How far a follower got in starting up."""

    READY = "ready"  # imported, device up: about to join the group
    BUILT = "built"  # its shard and runner are built (graphs captured)


@dataclass(frozen=True)
class RankError:
    """A follower's last words: the one-line error it exits with."""

    rank: int
    message: str


@dataclass(frozen=True)
class Pipes:
    """One follower's two pipes, as one side holds them."""

    plans: Connection
    reports: Connection


def send_all(pipes: list[Pipes], message: Message) -> None:
    """Rank 0: the same message to every follower, pickled once."""
    data = pickle.dumps(to_wire(message), protocol=pickle.HIGHEST_PROTOCOL)
    for pipe in pipes:
        pipe.plans.send_bytes(data)


def receive_plan(pipes: Pipes) -> Message:
    """A follower: the next message from rank 0 (blocks; EOFError once rank 0 is gone)."""
    return from_wire(pickle.loads(pipes.plans.recv_bytes()))


def report(pipes: Pipes, message: Any) -> None:
    """A follower: a milestone, a `RankError` or its `RankSteps` to rank 0."""
    pipes.reports.send(message)


def poll_report(pipes: Pipes, timeout_s: float) -> Any | None:
    """Rank 0: a follower's next report, or None if none came within `timeout_s`."""
    if not pipes.reports.poll(timeout_s):
        return None
    return pipes.reports.recv()
