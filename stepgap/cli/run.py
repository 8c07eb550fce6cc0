"""`stepgap run`: run a workload under the sync and/or overlap schedule and save it."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reference_engine import MODES, ConfigError
from stepgap.cli.common import console, err_console, handle_errors, print_json, table
from stepgap.identity import compare_tokens
from stepgap.runner import PartialRun, RunConfig, run_workload
from stepgap.runs import RunData, check_writable, save_group, save_run
from stepgap.summary_view import side_by_side
from stepgap.workloads import DEFAULT_WORKLOAD, load_workload


def _parse_overrides(items: list[str]) -> dict[str, int | float | bool | str]:
    overrides: dict[str, int | float | bool | str] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-override takes KEY=VALUE, got {item!r}")
        value: int | float | bool | str = raw
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        overrides[key] = value
    return overrides


@handle_errors
def run(
    mode: Annotated[str, typer.Option(help="Schedule: sync, overlap or both.")] = "both",
    workload: Annotated[
        str, typer.Option(help="Preset name (see `stepgap workloads`) or a .toml file.")
    ] = DEFAULT_WORKLOAD,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Run directory to write (default: runs/<workload>-<time>).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    profile: Annotated[
        bool, typer.Option(help="Also save a PyTorch profiler trace of a window of steps.")
    ] = False,
    profile_steps: Annotated[int, typer.Option(help="Decode steps in the profile window.")] = 50,
    num_requests: Annotated[int | None, typer.Option(help="Override the request count.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Override the slot count.")] = None,
    output_len: Annotated[int | None, typer.Option(help="Override max output tokens.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the workload seed.")] = None,
    model_override: Annotated[
        list[str] | None, typer.Option(help="Model field override KEY=VALUE, repeatable.")
    ] = None,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs/--eager", help="CUDA graphs for decode on GPU.")
    ] = True,
    instrument: Annotated[
        bool, typer.Option(help="NVTX ranges and host-phase clocks (off: --no-instrument).")
    ] = True,
    warmup_steps: Annotated[int, typer.Option(help="Decode steps left out of gap stats.")] = 5,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Run a workload on the reference engine, print its step gaps and latencies, save it."""
    modes = MODES if mode == "both" else (mode,)
    chosen = load_workload(workload)
    overrides = {**chosen.model_overrides, **_parse_overrides(model_override or [])}
    chosen = chosen.with_overrides(
        num_requests=num_requests,
        concurrency=concurrency,
        output_len=output_len,
        seed=seed,
        model_overrides=overrides,
    )
    config = RunConfig(
        workload=chosen,
        modes=modes,  # type: ignore[arg-type]
        device=device,
        cuda_graphs=cuda_graphs,
        instrument=instrument,
        profile_steps=profile_steps if profile else 0,
        warmup_steps=warmup_steps,
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = out or Path("runs") / f"{chosen.name}-{mode}-{stamp}"
    check_writable(target, force)
    if not json_output:
        console.print(
            f"workload [bold]{chosen.label}[/]: model {chosen.model_config().name}, "
            f"{chosen.num_requests} requests, concurrency {chosen.concurrency}"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs = _run_with_progress(config, quiet=json_output)
        for warning in caught:
            err_console.print(f"[yellow]warning:[/] {warning.message}")
    except PartialRun as partial:
        _save(partial.runs, target, force, grouped=len(modes) > 1)
        err_console.print(f"interrupted: incomplete run saved to {target}")
        raise typer.Exit(130) from None
    _save(runs, target, force, grouped=len(modes) > 1)
    _report(runs, target, json_output)


def _run_with_progress(config: RunConfig, quiet: bool) -> list[RunData]:
    if quiet:
        return run_workload(config)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(mode: str, finished: int, total: int) -> None:
            if mode not in tasks:
                tasks[mode] = bar.add_task(f"{mode:8s} requests", total=total)
            bar.update(tasks[mode], completed=finished)

        return run_workload(config, progress)


def _save(runs: list[RunData], target: Path, force: bool, grouped: bool) -> None:
    """One mode: a run directory; several: a group directory, even if interrupted early."""
    if grouped:
        save_group(runs, target, force)
    elif runs:
        save_run(runs[0], target, force)


def _report(runs: list[RunData], target: Path, json_output: bool) -> None:
    summaries = {r.mode: r.summary for r in runs}
    identity = None
    if len(runs) == 2:
        a, b = runs
        identity = compare_tokens(a.tokens, b.tokens, a.margins, b.margins)
    if json_output:
        print_json(
            {
                "out": str(target),
                "runs": {r.mode: {"summary": r.summary, "complete": r.complete} for r in runs},
                "tokens_identical": identity.identical if identity else None,
                "identity": identity.to_dict() if identity else None,
                "workload": runs[0].meta["workload"]["label"] if runs else None,
            }
        )
        return
    rows = side_by_side(summaries)
    names = list(summaries)
    columns = ["metric", *names] + (
        ["overlap/sync" if names == list(MODES) else "ratio"] if len(names) > 1 else []
    )
    body = [
        [row["label"], *(row[n] for n in names)] + ([row["ratio"]] if len(names) > 1 else [])
        for row in rows
    ]
    label = runs[0].meta["workload"]["label"]
    device = runs[0].meta["environment"]["device"]["name"]
    console.print(table(f"{label} on {device}", columns, body))
    if identity is not None:
        verdict = "[green]identical[/]" if identity.identical else f"[red]{identity.describe()}[/]"
        console.print(f"tokens: {verdict}")
    console.print(f"saved: {target}")
