"""A continuous-batching MoE decode engine with a sync and an overlap schedule."""

from reference_engine.config import PRESETS, ConfigError, ModelConfig, model_config
from reference_engine.engine import MODES, Engine, EngineConfig, RunInterrupted, RunOutput
from reference_engine.request import FinishReason, Request, SamplingParams

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
