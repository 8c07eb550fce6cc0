"""GPU kernels of the decode hot path, each beside the torch reference it must match.

Every kernel keeps three invariants, tested on the GPU: it is CUDA-graph capturable, it
never syncs the host, and it is batch-invariant (a row's result is bit-identical whatever
the other rows hold). The torch references are the CPU path; on CUDA the model uses the
Triton kernels (`KernelBackend.TRITON`). Triton's interpreter (`TRITON_INTERPRET=1`) runs
the kernels on CPU tensors, which is how the CPU tests check their logic.
"""

from __future__ import annotations

import enum
import importlib.util
import os


class KernelBackend(enum.StrEnum):
    """Which implementation of the hot-path ops a model runs."""

    TORCH = "torch"  # the reference: plain torch ops, any device
    TRITON = "triton"  # the kernels: CUDA, or CPU under TRITON_INTERPRET=1


def triton_usable(device_kind: str) -> bool:
    """Whether Triton kernels can run on `device_kind` here."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device_kind == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def default_backend(device_kind: str) -> KernelBackend:
    """Triton kernels on CUDA when Triton is installed, the torch reference elsewhere."""
    if device_kind == "cuda" and triton_usable(device_kind):
        return KernelBackend.TRITON
    return KernelBackend.TORCH
