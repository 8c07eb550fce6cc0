"""NVTX instrumentation of the reference engine's host phases.

Each host phase becomes an NVTX range named `stepgap/<phase>` in domain `stepgap`, nested
in a `stepgap/step` range per loop iteration, so Nsight Systems shows where the host time
between steps goes. While a PyTorch profiler records (`stepgap run --profile`), the same
names are also emitted as `record_function` ranges: Kineto does not collect NVTX, and this
way its Chrome trace shows the identical hierarchy.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import torch

from reference_engine.probe import Probe

DOMAIN = "stepgap"
STEP_RANGE = "stepgap/step"


def range_name(phase: str) -> str:
    return f"{DOMAIN}/{phase}"


def _load_nvtx() -> Any | None:
    try:
        return importlib.import_module("nvtx")
    except ImportError:
        warnings.warn(
            "the nvtx package is missing: NVTX ranges are off (pip install nvtx)", stacklevel=3
        )
        return None


class NvtxProbe(Probe):
    """Host clocks plus NVTX ranges (and profiler ranges while `profiling` is set)."""

    def __init__(self, enabled: bool = True, nvtx_module: Any | None = None) -> None:
        super().__init__(enabled)
        self.nvtx = nvtx_module if nvtx_module is not None else (_load_nvtx() if enabled else None)
        self.domain = self.nvtx.get_domain(DOMAIN) if self.nvtx is not None else None
        self._attributes: dict[str, Any] = {}
        self.profiling = False
        self._profiler_ranges: list[Any] = []

    def push(self, name: str) -> None:
        if self.domain is not None:
            attrs = self._attributes.get(name)
            if attrs is None:  # registering the message once keeps each push cheap
                message = range_name(name)
                attrs = self._attributes[name] = self.domain.get_event_attributes(message=message)
            self.domain.push_range(attrs)
        if self.profiling:
            profiler_range = torch.profiler.record_function(range_name(name))
            profiler_range.__enter__()
            self._profiler_ranges.append(profiler_range)

    def pop(self) -> None:
        if self._profiler_ranges:
            self._profiler_ranges.pop().__exit__(None, None, None)
        if self.domain is not None:
            self.domain.pop_range()
