"""`stepgap run`: run a workload under the sync and/or overlap schedule and save it.

The command builds the run's configuration and checks the output path before anything
heavy is imported or built: a bad `--out` fails in well under a second, and a run that
cannot fit in memory is refused with the numbers before the model is allocated.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepgap.cli.common import console, err_console, fail, handle_errors, plain, warn
from stepgap.workloads import DEFAULT_WORKLOAD, Workload, load_workload, sentence

if TYPE_CHECKING:
    from stepgap.runner import RunConfig
    from stepgap.runs import RunData

MODE_CHOICES = ("sync", "overlap", "both")
EXIT_RUN_FAILED = 1  # a tensor-parallel rank died or hung
_NOTHING_SAVED = "interrupted before anything was measured: nothing saved"


@handle_errors
def run(
    mode: Annotated[str, typer.Option(help="Schedule: sync, overlap or both.")] = "both",
    workload: Annotated[
        str, typer.Option(help="Preset name (see `stepgap workloads`) or a .toml file.")
    ] = DEFAULT_WORKLOAD,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory to write (default: runs/<workload>-<mode>-<time>)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an existing --out run directory (only a stepgap run, and only once "
            "the new run is complete)."
        ),
    ] = False,
    profile: Annotated[
        bool, typer.Option(help="Also save a PyTorch profiler trace of a window of steps.")
    ] = False,
    profile_steps: Annotated[int, typer.Option(help="Decode steps in the profile window.")] = 50,
    num_requests: Annotated[int | None, typer.Option(help="Override the request count.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Override the slot count.")] = None,
    output_len: Annotated[int | None, typer.Option(help="Override max output tokens.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the workload seed.")] = None,
    max_num_batched_tokens: Annotated[
        int | None,
        typer.Option(
            help="Chunked prefill: each step's token budget, decode rows plus prompt chunks "
            "(vLLM's name; 0: whole prompts, prefill before decode). Default: the workload's."
        ),
    ] = None,
    logprobs: Annotated[
        int | None,
        typer.Option(help="Every request asks for its tokens' logprobs and the top N (0-20)."),
    ] = None,
    model_override: Annotated[
        list[str] | None, typer.Option(help="Model field override KEY=VALUE, repeatable.")
    ] = None,
    goodput: Annotated[
        list[str] | None,
        typer.Option(
            help="Service-level objective KEY:MS for request_goodput, KEY one of ttft, tpot, "
            "e2el (as `vllm bench serve --goodput`); repeatable."
        ),
    ] = None,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs/--eager", help="CUDA graphs for decode on GPU.")
    ] = True,
    instrument: Annotated[
        bool, typer.Option(help="NVTX ranges and host-phase clocks (off: --no-instrument).")
    ] = True,
    warmup_steps: Annotated[int, typer.Option(help="Decode steps left out of gap stats.")] = 5,
    tp: Annotated[
        int | None,
        typer.Option(
            "--tp",
            help="Tensor-parallel ranks (default: the workload's): one process each, started "
            "here; one GPU each on CUDA (NCCL), processes over gloo on CPU.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Run a workload on the reference engine, print its step gaps, latencies and
    throughput with the overlap/sync ratios and their noise, and save it."""
    from reference_engine.config import ConfigError
    from stepgap.model_overrides import parse_overrides
    from stepgap.output_paths import check_run_target, default_run_dir

    if mode not in MODE_CHOICES:
        raise ConfigError(f"unknown mode {mode!r}; choose sync, overlap or both")
    chosen = load_workload(workload)
    overrides = {**chosen.model_overrides, **parse_overrides(model_override or [])}
    chosen = chosen.with_overrides(
        num_requests=num_requests,
        concurrency=concurrency,
        output_len=output_len,
        seed=seed,
        model_overrides=overrides,
        logprobs=logprobs,
    )
    if max_num_batched_tokens is not None:  # 0: whole prompts
        chosen = dataclasses.replace(chosen, max_num_batched_tokens=max_num_batched_tokens or None)
    target = check_run_target(out, force) if out else default_run_dir(f"{chosen.name}-{mode}")
    from stepgap.goodput import parse_goodput  # pandas: after the path, which fails fastest

    slo = parse_goodput(goodput or [])
    config = _config(
        chosen,
        mode,
        device=device,
        cuda_graphs=cuda_graphs,
        instrument=instrument,
        profile_steps=profile_steps if profile else 0,
        warmup_steps=warmup_steps,
        goodput=slo,
        tensor_parallel=tp,
    )
    if not json_output:
        console.print(plain(_headline(chosen, config.tp)))
    runs = _measure(config, target, force, quiet=json_output)
    _report(runs, json_output)


def _config(chosen: Workload, mode: str, **settings: Any) -> RunConfig:
    from reference_engine import MODES
    from stepgap.runner import RunConfig

    modes = MODES if mode == "both" else (mode,)
    return RunConfig(workload=chosen, modes=modes, **settings)  # type: ignore[arg-type]


def _headline(chosen: Workload, tp: int) -> str:
    return sentence(chosen.describe() | {"model": chosen.model_config().name}, tp)


def _measure(config: RunConfig, target: Path, force: bool, quiet: bool) -> list[RunData]:
    """Run, then save what was measured — all of it, or on Ctrl-C what was finished."""
    from stepgap.footprint import gigabytes
    from stepgap.runner import PartialRun

    config.check_devices()
    footprint = config.check_memory()
    if not quiet:
        size = gigabytes(footprint.device_total + footprint.host)
        each = " per rank" if config.tp > 1 else ""
        err_console.print(plain(f"memory: about {size}{each} on {config.device_kind}"), style="dim")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs = _run_with_progress(config, quiet)
        for warning in caught:
            warn(str(warning.message))
    except PartialRun as partial:
        saved = _save_partial(partial.runs, target, grouped=len(config.modes) > 1)
        if partial.reason is None:
            what = f"what was measured is saved, marked incomplete: {saved}"
            err_console.print(plain(f"interrupted: {what}" if saved else _NOTHING_SAVED))
            raise typer.Exit(130) from None
        where = f"; what was measured is saved, marked incomplete: {saved}" if saved else ""
        fail(f"{partial.reason}{where}", EXIT_RUN_FAILED)
    saved = _save(runs, target, force, grouped=len(config.modes) > 1)
    if saved != target:
        warn(f"{target} was taken while the run went on; saved to {saved} instead")
    return _located(runs, saved)


def _located(runs: list[RunData], saved: Path) -> list[RunData]:
    for run in runs:
        run.path = saved / run.mode if len(runs) > 1 else saved
    return runs


def _save_partial(runs: list[RunData], target: Path, grouped: bool) -> Path | None:
    """Ctrl-C or a failed rank: save what was measured, never over an existing (complete)
    run. Returns where (None: nothing was measured)."""
    if not runs:
        return None
    from stepgap.output_paths import free_name

    place = free_name(target, "-incomplete") if target.exists() else target
    return _save(runs, place, force=False, grouped=grouped)


def _run_with_progress(config: RunConfig, quiet: bool) -> list[RunData]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from stepgap.runner import run_workload

    if quiet or not err_console.is_terminal:  # no bar in logs: it would leave blank lines
        return run_workload(config)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err_console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(mode: str, finished: int, total: int) -> None:
            if mode not in tasks:
                tasks[mode] = bar.add_task(f"{mode:8s} requests", total=total)
            bar.update(tasks[mode], completed=finished)

        return run_workload(config, progress)


def _save(runs: list[RunData], target: Path, force: bool, grouped: bool) -> Path:
    """One mode: a run directory; several: a group directory, even if interrupted early.
    Ctrl-C waits until the directory is complete."""
    from stepgap.runs import save_group, save_run

    if grouped:
        return save_group(runs, target, force)
    return save_run(runs[0], target, force)


def _report(runs: list[RunData], json_output: bool) -> None:
    from stepgap.cli.common import print_json
    from stepgap.cli.run_report import print_report, report_json

    if json_output:
        print_json(report_json(runs))
        return
    print_report(runs)
