"""`stepgap verify`: check the overlap schedule's invariants over many seeded runs, under
schedule jitter, and prove the checks catch planted faults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from reference_engine import RunInterrupted
from reference_engine.faults import FAULT_INFO, Fault, parse_faults
from reference_engine.jitter import JITTER_LEVELS, Jitter, jitter_level
from stepgap import environment
from stepgap.cli.common import (
    UsageError,
    console,
    err_console,
    handle_errors,
    labelled,
    table,
)
from stepgap.output_paths import check_file_target
from stepgap.verify.cases import FAMILIES, WORKLOADS
from stepgap.verify.checks import CHECKS, Finding
from stepgap.verify.runner import (
    CaseResult,
    FaultTable,
    VerifyConfig,
    VerifyResult,
    fault_table,
)
from stepgap.verify.runner import verify as run_verify
from stepgap.verify.verdict import build_verdict, dumps, write_verdict

EXIT_FAILED = 1


@handle_errors
def verify(
    workload: Annotated[
        list[str] | None,
        typer.Option(help=f"Verification mix, repeatable: {', '.join(WORKLOADS)} (default all)."),
    ] = None,
    family: Annotated[
        list[str] | None,
        typer.Option(help=f"Model family, repeatable (default {' and '.join(FAMILIES)})."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per workload and family.")] = 4,
    first_seed: Annotated[int, typer.Option(help="The first seed.")] = 0,
    jitter: Annotated[
        str, typer.Option(help=f"Schedule jitter: off, {', '.join(JITTER_LEVELS)}.")
    ] = "heavy",
    fault: Annotated[
        str | None,
        typer.Option(
            help="Plant this fault in the overlap loop (tests the verifier): "
            + ", ".join(f.value for f in Fault)
            + "."
        ),
    ] = None,
    all_faults: Annotated[
        bool,
        typer.Option(
            "--all-faults",
            help="Run the clean engine, then every fault with jitter off and on: the table of "
            "which check caught which fault (19 runs per seed, workload and family, 17 where no "
            "prompt runs in chunks: about 5 minutes per seed for the default families and "
            "workloads on 2 CPU cores).",
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs/--eager", help="CUDA graphs for decode on GPU.")
    ] = True,
    margin_tolerance: Annotated[
        float, typer.Option(help="Allowed |sync - overlap| top-2 margin difference.")
    ] = 0.0,
    out: Annotated[Path | None, typer.Option(help="Write the verdict JSON to this file.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the verdict JSON.")] = False,
) -> None:
    """Run sync and overlap over seeds x workloads x model families and check, per request:
    identical tokens and top-2 margins, the exact token count its stop rule allows, no token
    after a stop, no position repeated or skipped, and that every step's tokens went to
    requests that ran in it. Exit 0 when every check held (and, with --all-faults, every
    planted fault was caught), 1 otherwise."""
    if fault and all_faults:
        raise UsageError("--fault and --all-faults exclude each other")
    if seeds < 1 or first_seed < 0:
        raise UsageError("--seeds must be >= 1 and --first-seed >= 0")
    if out is not None:
        check_file_target(out, force, "--out")
    config = VerifyConfig(
        families=tuple(family or FAMILIES),
        workloads=tuple(workload or WORKLOADS),
        seeds=tuple(range(first_seed, first_seed + seeds)),
        jitter=jitter_level(jitter),
        fault=parse_faults([fault])[0] if fault else None,
        device=device,
        cuda_graphs=cuda_graphs,
        margin_tolerance=margin_tolerance,
    )
    if not json_output:
        console.print(_header(config, all_faults))
    try:
        result, faults = _run(config, all_faults, quiet=json_output)
    except (RunInterrupted, KeyboardInterrupt):
        err_console.print("interrupted: no verdict written")
        raise typer.Exit(130) from None
    verdict = build_verdict(result, faults, environment.collect(result.device))
    if out is not None:
        write_verdict(verdict, out, force)
    if json_output:
        typer.echo(dumps(verdict), nl=False)
    else:
        _report(result, faults, verdict["passed"], out)
    if not verdict["passed"]:
        raise typer.Exit(EXIT_FAILED)


def _header(config: VerifyConfig, all_faults: bool) -> str:
    runs = len(config.cases())
    what = "clean engine, then every planted fault" if all_faults else "clean engine"
    if config.fault:
        what = f"fault [bold]{config.fault}[/] planted in the overlap loop"
    seeds = f"{config.seeds[0]}-{config.seeds[-1]}" if len(config.seeds) > 1 else config.seeds[0]
    return (
        f"verify: {what}; {runs} runs = families {', '.join(config.families)} x workloads "
        f"{', '.join(config.workloads)} x seeds {seeds}; jitter {config.jitter_label}"
    )


def _run(
    config: VerifyConfig, all_faults: bool, quiet: bool
) -> tuple[VerifyResult, FaultTable | None]:
    def go(progress):
        if all_faults:
            table_ = fault_table(config, progress=progress)
            return table_.clean, table_
        return run_verify(config, progress), None

    if quiet or not err_console.is_terminal:
        return go(None)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err_console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(label: str, done: int, total: int) -> None:
            key = f"{label:28s}"
            if key not in tasks:
                tasks[key] = bar.add_task(key, total=total)
            bar.update(tasks[key], completed=done)

        return go(progress)


def _report(
    result: VerifyResult, faults: FaultTable | None, passed: bool, out: Path | None
) -> None:
    rows = []
    for name in CHECKS:
        failing = result.failures(name)
        where = min(failing[0].findings[name], key=Finding.sort_key).where() if failing else "—"
        rows.append([name, len(result.cases), len(failing), where])
    console.print(table("checks", ["check", "runs", "failed", "first failure"], rows))
    first = result.first_failure()
    if first is not None:
        _print_failure(result, *first)
    if result.config.fault is not None:
        caught = sum(not c.passed for c in result.cases)
        console.print(
            f"fault {result.config.fault}: caught in {caught}/{len(result.cases)} runs; first "
            f"check: {_first_checks(result)}"
        )
    if faults is not None:
        _print_fault_table(faults)
    colour, word = ("green", "PASSED") if passed else ("red", "FAILED")
    console.print(f"verdict: [bold {colour}]{word}[/]")
    if out is not None:
        console.print(labelled("saved", "", str(out)))


def _first_checks(result: VerifyResult) -> str:
    counts = result.first_checks()
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common()) or "—"


def _jitter_text(jitter: Jitter | None) -> str:
    if jitter is None:
        return "jitter off"
    return (
        f"jitter seed {jitter.seed} (host pauses up to {jitter.host_max_us / 1e3:.1f} ms, "
        f"device stalls up to {jitter.device_max_us / 1e3:.1f} ms)"
    )


def _print_failure(result: VerifyResult, case: CaseResult, finding: Finding) -> None:
    console.print(f"\n[bold red]first failure[/]: {finding.check} — {finding.where()}")
    console.print(f"  case {case.case.label()}, {_jitter_text(case.jitter)}")
    for mode, value in (("sync", finding.sync), ("overlap", finding.overlap)):
        if value is not None:
            console.print(f"  {mode:8s} {value.describe()}")
    if finding.reference_token is not None:
        console.print(f"  stop-free reference: token {finding.reference_token}")
    console.print(f"  diagnosis: {finding.diagnosis}", soft_wrap=True)
    console.print(f"  reproduce: {_reproduce(result.config, case)}\n", soft_wrap=True)


def _reproduce(config: VerifyConfig, case: CaseResult) -> str:
    parts = [
        "stepgap verify",
        f"--family {case.case.family}",
        f"--workload {case.case.workload}",
        f"--first-seed {case.case.seed} --seeds 1",
        f"--jitter {config.jitter_label}",
        f"--device {config.device}",
    ]
    if case.fault is not None:
        parts.append(f"--fault {case.fault}")
    return " ".join(parts)


def _print_fault_table(faults: FaultTable) -> None:
    levels = list(next(iter(faults.rows.values()))) if faults.rows else []
    columns = ["fault", "race", *[f"caught, jitter {level}" for level in levels], "first check"]
    rows = []
    for fault, by_level in faults.rows.items():
        caught = [f"{sum(not c.passed for c in r.cases)}/{len(r.cases)}" for r in by_level.values()]
        last = list(by_level.values())[-1]
        race = "yes" if FAULT_INFO[fault].race else "no"
        rows.append([str(fault), race, *caught, _first_checks(last)])
    console.print(table("planted faults", columns, rows))
    clean = faults.clean
    alarms = sum(not c.passed for c in clean.cases)
    console.print(
        f"clean engine: {len(clean.cases)} runs, {alarms} false alarm(s); "
        f"faults caught: {sum(faults.caught(f) for f in faults.rows)}/{len(faults.rows)}"
    )
