"""`stepgap analyze`: step gaps from another engine's trace, saved as a run directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from stepgap.cli.common import (
    UsageError,
    console,
    err_console,
    handle_errors,
    print_json,
    table,
    warn,
)

if TYPE_CHECKING:
    from stepgap.analyze import StepOptions, TraceAnalysis

MODES = ("sync", "overlap", "unknown")
MAX_WARMUP_STEPS = 1_000_000
SHOWN = [
    ("gap_p50_us", "gap p50 (µs)"),
    ("gap_p90_us", "gap p90 (µs)"),
    ("gap_p99_us", "gap p99 (µs)"),
    ("gap_mean_us", "gap mean (µs)"),
    ("gap_max_us", "gap max (µs)"),
    ("gap_samples", "gaps counted"),
    ("idle_between_steps_us", "idle between steps (µs)"),
    ("idle_between_steps_fraction", "idle between steps (of span)"),
    ("idle_inside_steps_us", "idle inside steps (µs)"),
    ("idle_inside_steps_fraction", "idle inside steps (of span)"),
    ("device_idle_total_us", "device idle, total (µs)"),
    ("device_idle_total_fraction", "device idle, total (of span)"),
    ("analysed_span_us", "analysed span (µs)"),
    ("overlap_total_us", "steps overlapping (µs)"),
    ("num_steps", "steps"),
]
GROUP_COLUMNS = [
    ("steps", "steps"),
    ("gap_p50_us", "gap p50 (µs)"),
    ("idle_between_steps_us", "idle between (µs)"),
    ("idle_inside_steps_us", "idle inside (µs)"),
    ("device_idle_total_us", "device idle (µs)"),
    ("overlap_us", "overlap (µs)"),
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
            help="Regex naming the per-step host ranges (default: the first known rule that "
            "matches: ProfilerStep#N, then vLLM, SGLang, TensorRT-LLM and stepgap step "
            "annotations).",
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
    """Turn foreign traces into stepgap's per-step table and summary: steps from the known
    engines' step annotations (or --range), device work attributed to them by correlation
    id from any thread; gaps, overlaps, three idle figures and what the host did in each gap;
    saved as a run directory that compare, report and gate read."""
    from stepgap.analyze import StepOptions, TraceError, to_run_data
    from stepgap.output_paths import check_run_target, default_run_dir
    from stepgap.runs import save_run

    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 0 <= warmup_steps <= MAX_WARMUP_STEPS:
        raise UsageError(f"--warmup-steps must be in [0, {MAX_WARMUP_STEPS}]")
    run_name = name or _trace_name(traces[0])
    target = out or default_run_dir(f"{_path_safe(run_name)}-analyze")
    if save and out is not None:
        check_run_target(target, force)
    try:
        options = StepOptions(step_range, split_idle_us, streams, event_marks)
        result = _analyze_with_progress(traces, options, warmup_steps, quiet=json_output)
    except TraceError as error:
        raise UsageError(str(error)) from None
    if save:
        target = save_run(to_run_data(result, run_name, mode), target, force)
    if json_output:
        print_json({"out": str(target) if save else None, "mode": mode, **result.to_dict()})
        return
    _report(result, run_name, target if save else None)


def _trace_name(path: Path) -> str:
    stem = re.sub(r"(\.pt)?\.trace|\.json|\.gz|\.sqlite|\.pt\b", "", path.name)
    return _path_safe(stem)


def _path_safe(name: str) -> str:
    """`name` as one directory name: runs of other characters become `-`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:100] or "trace"


def _analyze_with_progress(
    traces: list[Path], options: StepOptions, warmup_steps: int, quiet: bool
) -> TraceAnalysis:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from stepgap.analyze import analyze_traces

    if quiet or not err_console.is_terminal:
        return analyze_traces(traces, options, warmup_steps)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(escape(f"reading {Path(path).name}"), total=total)
            bar.update(tasks[path], completed=done, total=total)

        return analyze_traces(traces, options, warmup_steps, progress)


def _report(result: TraceAnalysis, run_name: str, target: Path | None) -> None:
    sources = ", ".join(f"{t['path']} ({t['format']}, rank {t['rank']})" for t in result.traces)
    console.print(f"{run_name}: {sources}", markup=False, highlight=False)
    console.print(f"steps from {result.step_source}", markup=False, highlight=False)
    rows = [[label, result.summary.get(key)] for key, label in SHOWN]
    console.print(table("summary", ["metric", "value"], rows))
    if len(result.groups) > 1:
        _print_groups(result)
    _print_causes(result.causes)
    for note in result.notes:
        warn(note, "note")
    if target is not None:
        console.print(f"saved: {target}", markup=False, highlight=False)


def _print_groups(result: TraceAnalysis) -> None:
    keys = result.options.group_keys
    header = [*keys, *(label for _, label in GROUP_COLUMNS)]
    rows = [[g[k] for k in keys] + [g[c] for c, _ in GROUP_COLUMNS] for g in result.groups]
    console.print(
        table("per rank and device" + (" and stream" if len(keys) > 2 else ""), header, rows)
    )


def _print_causes(causes: dict) -> None:
    console.print(f"why the gaps: {causes.get('headline', 'no step gaps')}", markup=False)
    if causes.get("by_cause"):
        rows = [
            [c["wait"], c["wait_range"], c["after"], c["gaps"], c["us"], c["share"]]
            for c in causes["by_cause"]
        ]
        header = ["host wait before the gap", "inside", "waited for", "gaps", "µs", "share"]
        console.print(table("gap time by cause", header, rows))
    if causes.get("by_range"):
        rows = [[r["range"], r["us"], r["share"]] for r in causes["by_range"]]
        console.print(table("gap time by host range", ["host range", "µs", "share"], rows))
