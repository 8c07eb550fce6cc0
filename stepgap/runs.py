"""Run directories: the on-disk form of a run, written atomically, read back as tables.

A run directory holds `run.json` (schema version, environment, config, workload, mode,
summary, completeness), `steps.csv`, `requests.csv`, `phases.csv`, `tokens.jsonl` (token
ids, top-2 margins and host arrival times per request) and optionally `trace.json.gz`.
A `--mode both` run is a group directory with one run directory per mode inside.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
TRACE_FILE = "trace.json.gz"


class RunError(Exception):
    """A run directory is missing, incomplete where completeness is needed, or unreadable."""


@dataclass
class RunData:
    """One run's metadata and tables, in memory."""

    meta: dict[str, Any]
    steps: pd.DataFrame
    requests: pd.DataFrame
    tokens: dict[int, list[int]] = field(default_factory=dict)
    margins: dict[int, list[float]] = field(default_factory=dict)
    token_times: dict[int, list[float]] = field(default_factory=dict)
    phases: pd.DataFrame | None = None
    path: Path | None = None
    trace_path: Path | None = None  # a PyTorch profiler trace to store as trace.json.gz

    @property
    def mode(self) -> str:
        return self.meta.get("mode", "unknown")

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta.get("summary", {})

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", False))

    @property
    def name(self) -> str:
        return self.meta.get("name") or (self.path.name if self.path else self.mode)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _clean(value: Any) -> Any:
    """JSON has no NaN: store missing numbers as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_run_files(run: RunData, directory: Path) -> None:
    """Write every file of `run` into an existing, empty `directory`."""
    meta = _clean({"schema_version": SCHEMA_VERSION, **run.meta})
    (directory / RUN_FILE).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    run.steps.to_csv(directory / "steps.csv", index=False)
    run.requests.to_csv(directory / "requests.csv", index=False)
    if run.phases is not None:
        run.phases.to_csv(directory / "phases.csv", index=False)
    if run.trace_path is not None and Path(run.trace_path) != directory / TRACE_FILE:
        shutil.copyfile(run.trace_path, directory / TRACE_FILE)
    with open(directory / "tokens.jsonl", "w") as out:
        for request_id, tokens in sorted(run.tokens.items()):
            record = {
                "request_id": request_id,
                "tokens": tokens,
                "margins": run.margins.get(request_id, []),
                "token_times_s": run.token_times.get(request_id, []),
            }
            out.write(json.dumps(_clean(record)) + "\n")


def check_writable(path: Path, force: bool) -> None:
    """Fail before any work when `path` holds something `force` does not allow replacing."""
    if path.exists() and not force:
        raise RunError(f"{path} already exists; pass --force to replace it")
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory")


def save_atomically(path: Path, write: Any, force: bool = False) -> Path:
    """Build the directory under a temporary name beside `path`, then rename it into place.

    `write(tmp_dir)` fills the directory. An existing `path` is replaced only with `force`,
    and only once the new one is complete, so a crash never leaves a half-written run.
    """
    path = Path(path)
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_run(run: RunData, path: Path, force: bool = False) -> Path:
    """Save one run directory atomically."""
    return save_atomically(path, lambda tmp: write_run_files(run, tmp), force)


def save_group(runs: list[RunData], path: Path, force: bool = False) -> Path:
    """Save several runs (one per mode) as subdirectories of one group directory."""

    def write(tmp: Path) -> None:
        for run in runs:
            (tmp / run.mode).mkdir()
            write_run_files(run, tmp / run.mode)

    return save_atomically(path, write, force)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RunError(f"cannot read {path}: {error}") from None


def _read_steps(path: Path) -> pd.DataFrame:
    steps = _read_csv(path)
    if "excluded" in steps.columns:  # CSV stores "no reason" as an empty cell
        steps["excluded"] = steps.excluded.astype(object).fillna("").astype(str)
    return steps


def load_run(path: str | Path, require_complete: bool = False) -> RunData:
    """Read a run directory back: `load_run(p).steps`, `.requests`, `.tokens`, `.summary`."""
    path = Path(path)
    meta_file = path / RUN_FILE
    if not path.is_dir():
        raise RunError(f"run directory {path} does not exist")
    if not meta_file.is_file():
        raise RunError(f"{path} is not a run directory (no {RUN_FILE})")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{meta_file} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
        raise RunError(f"{meta_file}: unsupported schema version {meta.get('schema_version')!r}")
    if require_complete and not meta.get("complete", False):
        reason = meta.get("incomplete_reason", "unknown reason")
        raise RunError(f"run {path} is incomplete ({reason})")
    steps, requests = _read_steps(path / "steps.csv"), _read_csv(path / "requests.csv")
    run = RunData(meta, steps, requests, path=path)
    if (path / "phases.csv").is_file():
        run.phases = _read_csv(path / "phases.csv")
    if (path / TRACE_FILE).is_file():
        run.trace_path = path / TRACE_FILE
    tokens_file = path / "tokens.jsonl"
    if tokens_file.is_file():
        try:
            for line in tokens_file.read_text().splitlines():
                record = json.loads(line)
                rid = int(record["request_id"])
                run.tokens[rid] = list(record.get("tokens", []))
                run.margins[rid] = [
                    m if m is not None else math.nan for m in record.get("margins", [])
                ]
                run.token_times[rid] = list(record.get("token_times_s", []))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise RunError(f"{tokens_file} is malformed: {error}") from None
    return run


def load_runs(path: str | Path, require_complete: bool = False) -> list[RunData]:
    """A run directory, or a group directory of runs (e.g. `--mode both`): all its runs."""
    path = Path(path)
    if (path / RUN_FILE).is_file() or not path.is_dir():
        return [load_run(path, require_complete)]
    members = sorted(p for p in path.iterdir() if (p / RUN_FILE).is_file())
    if not members:
        raise RunError(f"{path} holds no run (no {RUN_FILE} in it or its subdirectories)")
    return [load_run(p, require_complete) for p in members]
