"""Goodput as `vllm bench serve --goodput` defines it: completed requests per second that met
every service-level objective given (TTFT, TPOT, E2E latency, each in ms)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from reference_engine.config import ConfigError

# SLO name -> requests.csv column it bounds
SLO_COLUMNS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2el": "e2e_ms"}
MAX_SLO_MS = 1e9


@dataclass(frozen=True)
class GoodputSLO:
    """Upper bounds (ms) a request must meet to count as good; None: not constrained."""

    ttft: float | None = None
    tpot: float | None = None
    e2el: float | None = None

    def __post_init__(self) -> None:
        for name, value in self.bounds().items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"goodput SLO {name} must be a number of ms, got {value!r}")
            if not 0 < value <= MAX_SLO_MS or math.isnan(value):
                raise ConfigError(f"goodput SLO {name} must be in (0, {MAX_SLO_MS:g}] ms")

    def bounds(self) -> dict[str, float]:
        """The SLOs that are set, by name."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        return {f"{name}_ms": value for name, value in self.bounds().items()}

    def good(self, requests: pd.DataFrame) -> int:
        """How many completed requests met every SLO (vLLM counts a 1-token request's TPOT
        as 0, so TPOT never fails it)."""
        if not self.bounds() or not len(requests):
            return 0
        good = requests.finish_reason != "unfinished"
        for name, bound in self.bounds().items():
            values = requests[SLO_COLUMNS[name]].astype(float)
            if name == "tpot":
                values = values.fillna(0.0)
            good &= values <= bound
        return int(good.sum())


def parse_goodput(items: list[str]) -> GoodputSLO | None:
    """`--goodput ttft:200 --goodput tpot:50` (or "ttft:200 tpot:50"), ms, as a GoodputSLO."""
    pairs = [part for item in items for part in item.split()]
    if not pairs:
        return None
    bounds: dict[str, float] = {}
    for pair in pairs:
        name, _, raw = pair.partition(":")
        if name not in SLO_COLUMNS:
            choices = ", ".join(SLO_COLUMNS)
            raise ConfigError(f"--goodput takes KEY:MS with KEY one of {choices}, got {pair!r}")
        if name in bounds:
            raise ConfigError(f"--goodput {name} given twice")
        bounds[name] = _milliseconds(raw, pair)
    return GoodputSLO(**bounds)


def _milliseconds(raw: str, pair: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"--goodput {pair!r}: the bound must be a number of ms") from None
