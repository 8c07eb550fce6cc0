"""Shape checks of what a run directory holds, so a corrupt or partial one is a one-line
RunError naming the file, never a traceback deeper in compare, report, export or gate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from stepgap import metric_registry as registry
from stepgap.errors import RunError

READABLE_SCHEMAS = (1, 2)
OBJECT_FIELDS = ("summary", "workload", "environment", "config", "host_waits")
TEXT_FIELDS = ("mode", "name", "source", "incomplete_reason")
STEP_NUMBERS = ("step", "device_start_us", "device_end_us", "gap_before_us")
REQUEST_NUMBERS = ("request_id",)
PHASE_NUMBERS = ("step", "start_us", "end_us")
ENGINE_SOURCE = "stepgap-engine"


KIND_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return KIND_NAMES.get(type(value), type(value).__name__)


def check_meta(meta: Any, where: Path) -> dict[str, Any]:
    """`run.json`'s content, checked: an object of a readable schema, fields of the right
    type, numeric metrics numbers or null."""
    if not isinstance(meta, dict):
        raise RunError(f"{where}: expected a JSON object, got {_kind(meta)}")
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise RunError(f"{where}: unsupported schema version {version!r}")
    if "summary" not in meta:
        raise RunError(f"{where}: no summary (a partial run directory?)")
    for field in OBJECT_FIELDS:
        if field in meta and not isinstance(meta[field], dict):
            raise RunError(f"{where}: {field} must be an object, got {_kind(meta[field])}")
    for field in TEXT_FIELDS:
        if meta.get(field) is not None and not isinstance(meta[field], str):
            raise RunError(f"{where}: {field} must be a string, got {_kind(meta[field])}")
    if not isinstance(meta.get("complete", False), bool):
        raise RunError(f"{where}: complete must be true or false")
    _check_summary(meta["summary"], where)
    return meta


def _check_summary(summary: dict[str, Any], where: Path) -> None:
    for key, value in summary.items():
        if registry.metric(key) is None or key == "token_digest":
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not number:
            raise RunError(f"{where}: summary {key} must be a number or null, got {value!r}")


def check_complete_file(path: Path) -> None:
    """A table written by stepgap ends with a newline; one that does not was cut off."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        if handle.tell() == 0:
            raise RunError(f"cannot read {path}: it is empty (a partial run directory)")
        handle.seek(-1, 2)
        if handle.read(1) != b"\n":
            raise RunError(f"cannot read {path}: truncated, its last line is cut off")


def check_table(frame: pd.DataFrame, path: Path, numbers: tuple[str, ...]) -> pd.DataFrame:
    """The table with the columns `numbers` present and numeric (missing values allowed)."""
    missing = [column for column in numbers if column not in frame.columns]
    if missing:
        raise RunError(f"{path} lacks column(s) {', '.join(missing)}: not a stepgap table")
    for column in numbers:
        frame[column] = _numeric(frame[column], path, column)
    return frame


def _numeric(column: pd.Series, path: Path, name: str) -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    bad = (converted.isna() & column.notna()) | converted.isin([math.inf, -math.inf])
    if bad.any():
        value = column[bad].iloc[0]
        raise RunError(f"{path}: column {name} holds {str(value)[:40]!r}, not a finite number")
    return converted


def check_counts(meta: dict[str, Any], steps: int, requests: int, path: Path) -> None:
    """An engine run's tables hold as many rows as its summary counted."""
    if meta.get("source") != ENGINE_SOURCE:
        return
    summary = meta["summary"]
    for name, rows, key in (
        ("steps.csv", steps, "num_steps"),
        ("requests.csv", requests, "num_requests"),
    ):
        expected = summary.get(key)
        if isinstance(expected, int) and expected != rows:
            raise RunError(
                f"{path / name} has {rows} rows, run.json counts {expected}: "
                "a partial run directory"
            )


class TokenRecord(NamedTuple):
    """One line of tokens.jsonl."""

    request_id: int
    tokens: list[int]
    margins: list[float]  # top-2 logit margins
    token_times_s: list[float]
    logprobs: list[float] | None  # the sampled tokens' (when the request asked)
    top_logprobs: list[list[tuple[int, float]]]


def check_token_record(record: Any) -> TokenRecord:
    """One line of tokens.jsonl, its types checked."""
    if not isinstance(record, dict) or not isinstance(record.get("request_id"), int):
        raise ValueError("each line must be an object with an integer request_id")
    tokens = _list_of(record.get("tokens", []), int, "tokens")
    margins = _list_of(record.get("margins", []), float, "margins")
    times = _list_of(record.get("token_times_s", []), float, "token_times_s")
    logprobs = record.get("logprobs")
    if logprobs is not None:
        logprobs = _list_of(logprobs, float, "logprobs")
    top = [_top_entry(entry) for entry in _list_of_lists(record.get("top_logprobs", []))]
    return TokenRecord(record["request_id"], tokens, margins, times, logprobs, top)


def _list_of_lists(values: Any) -> list[list[Any]]:
    if not isinstance(values, list) or not all(isinstance(v, list) for v in values):
        raise ValueError("top_logprobs must be a list of lists")
    return values


def _top_entry(entry: list[Any]) -> list[tuple[int, float]]:
    pairs = []
    for pair in entry:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError(f"top_logprobs holds {pair!r}, not [token id, logprob]")
        token = _list_of([pair[0]], int, "top_logprobs ids")[0]
        pairs.append((token, _list_of([pair[1]], float, "top_logprobs values")[0]))
    return pairs


def _list_of(values: Any, kind: type, name: str) -> list[Any]:
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list")
    allowed = (int, float) if kind is float else (int,)
    out = []
    for value in values:
        if value is None and kind is float:
            out.append(math.nan)
        elif isinstance(value, bool) or not isinstance(value, allowed):
            raise ValueError(f"{name} holds {value!r}")
        else:
            out.append(value)
    return out
