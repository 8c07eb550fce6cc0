"""Whether two runs' tokens should agree at all: a divergence reads as a numerical near-tie
or a logic error only between runs of the same model, weights seed and sampling."""

from __future__ import annotations

from typing import Any

# (what it is, where run.json keeps it)
PREMISE = (
    ("model", ("config", "engine", "model")),
    ("weights seed", ("config", "engine", "seed")),
    ("workload seed", ("workload", "seed")),
    ("temperature", ("workload", "temperature")),
    ("sampled fraction", ("workload", "sampled_fraction")),
    ("top-k", ("workload", "top_k")),
    ("top-p", ("workload", "top_p")),
    ("ignore EOS", ("workload", "ignore_eos")),
    ("prompt length", ("workload", "input_len")),
    ("shortest prompt", ("workload", "input_len_min")),
)


def _lookup(meta: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = meta
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _shown(name: str, value: Any) -> str:
    if name == "model" and isinstance(value, dict):
        return str(value.get("name", "?"))
    return str(value)


def premise_differences(meta_a: dict[str, Any], meta_b: dict[str, Any]) -> tuple[str, ...]:
    """What differs between the runs' models, weights and sampling, as short phrases
    (`different model: a vs b`); empty when nothing known differs."""
    differences = []
    for name, path in PREMISE:
        a, b = _lookup(meta_a, path), _lookup(meta_b, path)
        if a is not None and b is not None and a != b:
            differences.append(f"different {name}: {_shown(name, a)} vs {_shown(name, b)}")
    return tuple(differences)
