"""Run directories: the on-disk form of a run, written atomically, read back as tables.

A run directory holds `run.json` (schema version, environment, config, workload, mode,
summary, completeness), `steps.csv`, `requests.csv`, `phases.csv`, `tokens.jsonl` (token
ids, top-2 margins and host arrival times per request) and optionally `trace.json.gz`.
A tensor-parallel run adds `steps-rank<r>.csv` and `phases-rank<r>.csv` for every rank
r >= 1 (rank 0's tables are the plain ones, so every reader of a TP-1 run reads it too;
stepgap.rank_metrics). A `--mode both` run is a group directory with one run directory per
mode inside.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stepgap import run_validation as check
from stepgap.atomic import write_directory
from stepgap.errors import RunError
from stepgap.interrupts import deferred_interrupts
from stepgap.output_paths import RUN_FILE, is_run_directory, rank_table_file
from stepgap.summary import Summary, upgrade

MODE_ORDER = ("sync", "overlap")  # reading order: the baseline first
SCHEMA_VERSION = 2  # 2: summary keys of stepgap.metric_registry (vLLM's names)
TRACE_FILE = "trace.json.gz"
TOKENS_FILE = "tokens.jsonl"
__all__ = ["RUN_FILE", "SCHEMA_VERSION", "RunData", "RunError", "load_run", "load_runs"]


def mode_order(mode: str) -> tuple[int, str]:
    """Sort key of a mode: sync (the baseline), overlap, then any other alphabetically."""
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


@dataclass
class RunData:
    """One run's metadata and tables, in memory."""

    meta: dict[str, Any]
    steps: pd.DataFrame
    requests: pd.DataFrame
    tokens: dict[int, list[int]] = field(default_factory=dict)
    margins: dict[int, list[float]] = field(default_factory=dict)
    token_times: dict[int, list[float]] = field(default_factory=dict)
    # per request that asked for them: the sampled tokens' logprobs, and the top-n
    # (token id, logprob) of each position
    logprobs: dict[int, list[float]] = field(default_factory=dict)
    top_logprobs: dict[int, Sequence[Sequence[tuple[int, float]]]] = field(default_factory=dict)
    phases: pd.DataFrame | None = None
    path: Path | None = None
    trace_path: Path | None = None  # a PyTorch profiler trace to store as trace.json.gz
    rank_steps: dict[int, pd.DataFrame] = field(default_factory=dict)  # TP: ranks >= 1
    rank_phases: dict[int, pd.DataFrame] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.meta.get("mode", "unknown")

    @property
    def summary(self) -> Summary:
        """The summary, readable by current and schema-1 key names alike."""
        summary = self.meta.get("summary")
        if not isinstance(summary, Summary):
            summary = self.meta["summary"] = upgrade(summary or {})
        return summary

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
    rest = {key: value for key, value in run.meta.items() if key != "schema_version"}
    meta = _clean({"schema_version": SCHEMA_VERSION, **rest, "summary": dict(run.summary)})
    (directory / RUN_FILE).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    run.steps.to_csv(directory / "steps.csv", index=False)
    run.requests.to_csv(directory / "requests.csv", index=False)
    if run.phases is not None:
        run.phases.to_csv(directory / "phases.csv", index=False)
    for rank, table in sorted(run.rank_steps.items()):
        table.to_csv(directory / rank_table_file("steps", rank), index=False)
    for rank, table in sorted(run.rank_phases.items()):
        table.to_csv(directory / rank_table_file("phases", rank), index=False)
    if run.trace_path is not None and Path(run.trace_path) != directory / TRACE_FILE:
        shutil.copyfile(run.trace_path, directory / TRACE_FILE)
    with open(directory / TOKENS_FILE, "w") as out:
        for request_id, tokens in sorted(run.tokens.items()):
            record = {
                "request_id": request_id,
                "tokens": tokens,
                "margins": run.margins.get(request_id, []),
                "token_times_s": run.token_times.get(request_id, []),
            }
            if request_id in run.logprobs:
                record["logprobs"] = run.logprobs[request_id]
                record["top_logprobs"] = list(run.top_logprobs.get(request_id, []))
            out.write(json.dumps(_clean(record)) + "\n")


def save_run(run: RunData, path: Path, force: bool = False) -> Path:
    """Save one run directory atomically; returns where it went (see `_save`)."""
    return _save(path, lambda tmp: write_run_files(run, tmp), force)


def save_group(runs: list[RunData], path: Path, force: bool = False) -> Path:
    """Save several runs (one per mode) as subdirectories of one group directory."""

    def write(tmp: Path) -> None:
        for run in runs:
            (tmp / run.mode).mkdir()
            write_run_files(run, tmp / run.mode)

    return _save(path, write, force)


def _save(path: Path, fill: Any, force: bool) -> Path:
    """`force` replaces an existing stepgap run at `path`, once the new one is complete;
    anything else already there stays, and the run goes to a free name beside it. Ctrl-C
    waits until the directory is complete: a finished measurement is never thrown away."""
    path = Path(path)
    with deferred_interrupts():
        return write_directory(path, fill, replace=force and is_run_directory(path))


def _read_csv(path: Path, numbers: tuple[str, ...]) -> pd.DataFrame:
    try:
        check.check_complete_file(path)
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise RunError(f"{path} is missing: a partial run directory") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunError(f"cannot read {path}: {first}") from None
    return check.check_table(frame, path, numbers)


def _read_steps(path: Path) -> pd.DataFrame:
    steps = _read_csv(path, check.STEP_NUMBERS)
    if "excluded" in steps.columns:  # CSV stores "no reason" as an empty cell
        steps["excluded"] = steps.excluded.astype(object).fillna("").astype(str)
    return steps


def _read_meta(path: Path) -> dict[str, Any]:
    meta_file = path / RUN_FILE
    if not path.exists():
        raise RunError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise RunError(f"{path} is not a directory (a run is a directory holding {RUN_FILE})")
    if not meta_file.is_file():
        raise RunError(f"{path} is not a run directory (no {RUN_FILE})")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise RunError(f"{meta_file} is not valid JSON: {error}") from None
    meta = check.check_meta(meta, meta_file)
    meta["summary"] = upgrade(meta["summary"])
    meta["schema_version"] = SCHEMA_VERSION
    return meta


def _read_tokens(run: RunData, tokens_file: Path) -> None:
    """Token ids, margins, times and logprobs per request (an analyzed trace's file is
    empty)."""
    if tokens_file.stat().st_size == 0:
        return
    check.check_complete_file(tokens_file)
    try:
        for line in tokens_file.read_text(encoding="utf-8").splitlines():
            record = check.check_token_record(json.loads(line))
            rid = record.request_id
            run.tokens[rid], run.margins[rid] = record.tokens, record.margins
            run.token_times[rid] = record.token_times_s
            if record.logprobs is not None:
                run.logprobs[rid], run.top_logprobs[rid] = record.logprobs, record.top_logprobs
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise RunError(f"{tokens_file} is malformed: {error}") from None


def _read_rank_tables(run: RunData, path: Path) -> None:
    """A tensor-parallel run's tables of ranks >= 1, one row per step of rank 0's."""
    for file in sorted(path.glob("steps-rank*.csv")):
        rank = _rank_of(file, "steps-rank")
        table = _read_steps(file)
        if len(table) != len(run.steps):
            raise RunError(f"{file} has {len(table)} rows, steps.csv {len(run.steps)}")
        run.rank_steps[rank] = table
    for file in sorted(path.glob("phases-rank*.csv")):
        run.rank_phases[_rank_of(file, "phases-rank")] = _read_csv(file, check.PHASE_NUMBERS)


def _rank_of(file: Path, prefix: str) -> int:
    rank = file.stem.removeprefix(prefix)
    if not rank.isdigit() or int(rank) < 1:
        raise RunError(f"{file}: not a rank's table (expected {prefix}<rank >= 1>.csv)")
    return int(rank)


def load_run(path: str | Path, require_complete: bool = False) -> RunData:
    """Read a run directory back: `load_run(p).steps`, `.requests`, `.tokens`, `.summary`.
    A missing, corrupt or partial directory is a one-line RunError naming the file."""
    path = Path(path)
    meta = _read_meta(path)
    if require_complete and not meta.get("complete", False):
        reason = meta.get("incomplete_reason", "unknown reason")
        raise RunError(f"run {path} is incomplete ({reason})")
    steps = _read_steps(path / "steps.csv")
    requests = _read_csv(path / "requests.csv", check.REQUEST_NUMBERS)
    check.check_counts(meta, len(steps), len(requests), path)
    run = RunData(meta, steps, requests, path=path)
    if (path / "phases.csv").is_file():
        run.phases = _read_csv(path / "phases.csv", check.PHASE_NUMBERS)
    _read_rank_tables(run, path)
    if (path / TRACE_FILE).is_file():
        run.trace_path = path / TRACE_FILE
    tokens_file = path / TOKENS_FILE
    if tokens_file.is_file():
        _read_tokens(run, tokens_file)
    elif meta.get("source") == check.ENGINE_SOURCE:
        raise RunError(f"{path} is a partial run directory: {TOKENS_FILE} is missing")
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
