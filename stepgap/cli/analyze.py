"""`stepgap analyze`: step gaps from another engine's trace, saved as a run directory."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from stepgap.analyze import StepOptions, TraceAnalysis, TraceError, analyze_traces, to_run_data
from stepgap.analyze.rundir import MODES
from stepgap.cli.common import (
    UsageError,
    console,
    err_console,
    handle_errors,
    print_json,
    table,
)
from stepgap.runs import check_writable, save_run

SHOWN = [
    ("gap_p50_us", "gap p50 (µs)"),
    ("gap_p90_us", "gap p90 (µs)"),
    ("gap_p99_us", "gap p99 (µs)"),
    ("gap_mean_us", "gap mean (µs)"),
    ("gap_max_us", "gap max (µs)"),
    ("gap_samples", "gaps counted"),
    ("idle_fraction", "idle fraction"),
    ("gap_total_us", "gaps total (µs)"),
    ("idle_inside_total_us", "idle inside steps (µs)"),
    ("busy_total_us", "busy total (µs)"),
    ("device_span_us", "device span (µs)"),
    ("num_steps", "steps"),
]


@handle_errors
def analyze(
    traces: Annotated[
        list[Path],
        typer.Argument(
            help="Trace files: PyTorch profiler / Kineto Chrome JSON (.json, .json.gz) or "
            "Nsight Systems SQLite exports. Several files are several ranks."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory to write (default: runs/<trace>-analyze-<time>)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    save: Annotated[bool, typer.Option(help="Save a run directory (off: --no-save).")] = True,
    step_range: Annotated[
        str | None,
        typer.Option(
            "--range",
            help="Regex naming the per-step host ranges (default: the first that matches of "
            "stepgap/launch, execute_model|forward, ProfilerStep#N).",
        ),
    ] = None,
    split_idle_us: Annotated[
        float | None,
        typer.Option(help="No ranges: split the kernel timeline at idle gaps above this (µs)."),
    ] = None,
    streams: Annotated[
        str, typer.Option(help="merged: a row per rank, device and step; separate: per stream.")
    ] = "merged",
    event_marks: Annotated[
        bool,
        typer.Option(
            help="Count cudaEventRecord calls in a step as device marks (CUDA-event "
            "step timers, e.g. stepgap's own, measure so)."
        ),
    ] = False,
    mode: Annotated[
        str, typer.Option(help="The traced engine's schedule: sync, overlap or unknown.")
    ] = "unknown",
    name: Annotated[str | None, typer.Option(help="Run name (default: the trace's).")] = None,
    warmup_steps: Annotated[int, typer.Option(help="Steps left out of gap stats.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Turn foreign traces into stepgap's per-step table and summary: steps from host ranges
    (record_function, NVTX) with device work attributed by correlation id, or from the
    kernel timeline alone; saved as a run directory that compare, report and gate read."""
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    run_name = name or _trace_name(traces[0])
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = out or Path("runs") / f"{run_name}-analyze-{stamp}"
    if save:
        check_writable(target, force)
    try:
        options = StepOptions(step_range, split_idle_us, streams, event_marks)
        result = _analyze_with_progress(traces, options, warmup_steps, quiet=json_output)
    except TraceError as error:
        raise UsageError(str(error)) from None
    if save:
        save_run(to_run_data(result, run_name, mode), target, force)
    if json_output:
        print_json({"out": str(target) if save else None, "mode": mode, **result.to_dict()})
        return
    _report(result, run_name, target if save else None)


def _trace_name(path: Path) -> str:
    stem = re.sub(r"(\.pt)?\.trace|\.json|\.gz|\.sqlite|\.pt\b", "", path.name)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "trace"


def _analyze_with_progress(
    traces: list[Path], options: StepOptions, warmup_steps: int, quiet: bool
) -> TraceAnalysis:
    if quiet:
        return analyze_traces(traces, options, warmup_steps)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(f"reading {Path(path).name}", total=total)
            bar.update(tasks[path], completed=done, total=total)

        return analyze_traces(traces, options, warmup_steps, progress)


def _report(result: TraceAnalysis, run_name: str, target: Path | None) -> None:
    sources = ", ".join(f"{t['path']} ({t['format']}, rank {t['rank']})" for t in result.traces)
    console.print(f"[bold]{run_name}[/]: {sources}")
    console.print(f"steps from {result.step_source}", highlight=False)
    rows = [[label, result.summary.get(key)] for key, label in SHOWN]
    console.print(table("summary", ["metric", "value"], rows))
    groups = result.groups()
    if len(groups) > 1:
        keys = list(groups[0])
        console.print(table("per group", keys, [[g[k] for k in keys] for g in groups]))
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    if target is not None:
        console.print(f"saved: {target}")
