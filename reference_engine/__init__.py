"""A continuous-batching MoE decode engine with a sync and an overlap schedule.

Exports load on first use (a module `__getattr__`): `from reference_engine import
ConfigError` reads only the torch-free config module, so the commands that never run the
engine (analyze, report, gate, compare, export) start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MODES": "reference_engine.engine",
    "PRESETS": "reference_engine.config",
    "ConfigError": "reference_engine.config",
    "Engine": "reference_engine.engine",
    "EngineConfig": "reference_engine.engine",
    "FinishReason": "reference_engine.request",
    "ModelConfig": "reference_engine.config",
    "Request": "reference_engine.request",
    "RunInterrupted": "reference_engine.engine",
    "RunOutput": "reference_engine.engine",
    "SamplingParams": "reference_engine.request",
    "model_config": "reference_engine.config",
}

__all__ = [
    "MODES",
    "PRESETS",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "FinishReason",
    "ModelConfig",
    "Request",
    "RunInterrupted",
    "RunOutput",
    "SamplingParams",
    "model_config",
]

if TYPE_CHECKING:
    from reference_engine.config import PRESETS, ConfigError, ModelConfig, model_config
    from reference_engine.engine import MODES, Engine, EngineConfig, RunInterrupted, RunOutput
    from reference_engine.request import FinishReason, Request, SamplingParams


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reference_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
