"""One rank's tensor-parallel group, the two collectives the model runs, and joining it."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from reference_engine.config import ConfigError

LOCALHOST = "127.0.0.1"
LEAVE_S = 20.0  # the most a rank waits for the others to tear the group down with it
# torch 2.13 renamed all_gather_into_tensor (now deprecated) to all_gather_single
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


@dataclass(frozen=True, eq=False)
class TensorParallel:
    """This process's place in the tensor-parallel group. Size 1 (`SINGLE`): no group,
    and both collectives return their input untouched (TP-1 numerics exactly)."""

    rank: int = 0
    size: int = 1
    group: Any = None  # a torch.distributed ProcessGroup when size > 1

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ConfigError(f"rank {self.rank} outside a group of {self.size}")
        if (self.group is None) != (self.size == 1):
            raise ConfigError("a tensor-parallel group needs a process group exactly when > 1")

    def split(self, total: int) -> int:
        """This rank's share of `total` (heads, intermediate or vocabulary rows)."""
        if total % self.size:
            raise ConfigError(f"{total} does not split over {self.size} ranks")
        return total // self.size

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum `x` over the ranks, in place; returns `x`."""
        if self.size > 1:
            dist.all_reduce(x, group=self.group)
        return x

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) per rank -> (N, size * C): the ranks' columns side by side, rank order."""
        if self.size == 1:
            return x
        rows, cols = x.shape
        gathered = x.new_empty((self.size * rows, cols))
        _all_gather_single(gathered, x.contiguous(), group=self.group)
        return gathered.view(self.size, rows, cols).permute(1, 0, 2).reshape(rows, -1)


SINGLE = TensorParallel()


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks meet (rank 0's TCP store) and how long anything may block."""

    port: int
    size: int
    backend: str  # "gloo" on CPU, "nccl" on CUDA
    startup_s: float  # joining the group
    collective_s: float  # one collective (the process group's timeout)

    def __post_init__(self) -> None:
        if self.backend not in ("gloo", "nccl"):
            raise ConfigError(f"unknown backend {self.backend!r}")
        if min(self.startup_s, self.collective_s) <= 0 or self.size < 2:
            raise ConfigError("a rendezvous needs >= 2 ranks and positive timeouts")


def master_store(size: int, timeout_s: float) -> dist.TCPStore:
    """Rank 0's store on a free local port (`.port`); returns without waiting for others."""
    timeout = dt.timedelta(seconds=timeout_s)
    return dist.TCPStore(LOCALHOST, 0, size, True, timeout=timeout, wait_for_workers=False)


def join_group(
    rendezvous: Rendezvous, rank: int, device: torch.device, store: Any = None
) -> TensorParallel:
    """Join the group as `rank` (rank 0 passes its master store) and run one collective, so
    that the communicators exist before any CUDA graph captures collectives."""
    if store is None:
        timeout = dt.timedelta(seconds=rendezvous.startup_s)
        store = dist.TCPStore(LOCALHOST, rendezvous.port, rendezvous.size, False, timeout=timeout)
    options: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(
        rendezvous.backend,
        store=store,
        rank=rank,
        world_size=rendezvous.size,
        timeout=dt.timedelta(seconds=rendezvous.collective_s),
        **options,
    )
    group = dist.group.WORLD
    dist.all_reduce(torch.ones(1, device=device), group=group)
    return TensorParallel(rank, rendezvous.size, group)


def leave_group(timeout_s: float = LEAVE_S) -> None:
    """Destroy this process's group (a later engine may join a new one). NCCL's teardown
    waits for every rank to tear down too, so all ranks leave together; if that does not
    finish within `timeout_s` (a rank gone), the communicators are aborted and the group
    abandoned instead of hanging."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    leaving = threading.Thread(target=dist.destroy_process_group, daemon=True)
    leaving.start()
    leaving.join(timeout_s)
    if leaving.is_alive():
        abort_group()


def abort_group() -> None:
    """Abort the communicators so that collectives waiting on a dead rank return (NCCL);
    best effort: gloo's fail by themselves once the peer's sockets close."""
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if abort is not None and dist.is_initialized():
        with contextlib.suppress(Exception):  # the group is being torn down anyway
            abort()
