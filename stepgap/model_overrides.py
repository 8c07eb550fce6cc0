"""Model overrides (`--model-override num_layers=4`, or `model_overrides` in a workload
file) parsed and checked against the type of each ModelConfig field, with one-line errors."""

from __future__ import annotations

import dataclasses
import math
import typing
from functools import cache
from typing import Any, Literal

from reference_engine.config import ConfigError, ModelConfig

MAX_INTEGER = 1_000_000  # no model dimension or count comes near; memory preflight does the rest
MAX_NUMBER = 1e12
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1"), ("false", "no", "0")
Value = int | float | bool | str


@cache
def field_types() -> dict[str, Any]:
    """ModelConfig's field name -> type (int, float, bool, str or a Literal of choices)."""
    hints = typing.get_type_hints(ModelConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ModelConfig)}


def parse_overrides(items: list[str]) -> dict[str, Value]:
    """`KEY=VALUE` strings as typed overrides: `num_layers=4` gives {"num_layers": 4}."""
    overrides: dict[str, Value] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--model-override takes KEY=VALUE, got {item!r}")
        kind = _known(key, "--model-override")
        overrides[key] = _checked(key, _parse(key, raw, kind), kind, "--model-override")
    return overrides


def check_overrides(overrides: Any, where: str) -> dict[str, Value]:
    """Overrides from a workload file: a table whose values have each field's type."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: model_overrides must be a table of field = value")
    return {
        key: _checked(key, value, _known(key, where), where) for key, value in overrides.items()
    }


def _known(key: str, where: str) -> Any:
    kinds = field_types()
    if key not in kinds:
        raise ConfigError(f"{where}: unknown model override(s) {key}; fields: {', '.join(kinds)}")
    return kinds[key]


def _parse(key: str, raw: str, kind: Any) -> Value:
    try:
        if kind is bool:
            return _boolean(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"--model-override {key} takes {_expected(kind)}, got {raw!r}") from None
    return raw


def _boolean(raw: str) -> bool:
    if raw.lower() in TRUE_WORDS + FALSE_WORDS:
        return raw.lower() in TRUE_WORDS
    raise ValueError(raw)


def _expected(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]


def _checked(key: str, value: Any, kind: Any, where: str) -> Value:
    """`value` if it has field `key`'s type and a sane size; a ConfigError otherwise."""
    if not _has_type(value, kind):
        raise ConfigError(f"{where}: {key} must be {_expected(kind)}, got {value!r}")
    if isinstance(value, (bool, str)):
        return value
    if not math.isfinite(value) or abs(value) > (MAX_INTEGER if kind is int else MAX_NUMBER):
        limit = MAX_INTEGER if kind is int else MAX_NUMBER
        raise ConfigError(f"{where}: {key} = {value!r} is out of range (at most {limit:g})")
    return value


def _has_type(value: Any, kind: Any) -> bool:
    if typing.get_origin(kind) is Literal:
        return value in typing.get_args(kind)
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)
