"""`stepgap bench`: a workload against any OpenAI-compatible server, saved as a run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from stepgap.bench.apis import ServerApi
from stepgap.bench.config import BenchConfig
from stepgap.bench.plan import bench_requests
from stepgap.bench.records import BenchOutcome
from stepgap.bench.rundir import to_run_data
from stepgap.cli.common import UsageError, console, err_console, fmt, handle_errors, print_json
from stepgap.output_paths import check_run_target, default_run_dir
from stepgap.runs import RunData, save_run
from stepgap.workloads import DEFAULT_WORKLOAD, load_workload

API_NAMES = ", ".join(a.value for a in ServerApi)
SHOWN = (
    ("completed", "Successful requests"),
    ("failed", "Failed requests"),
    ("duration", "Benchmark duration (s)"),
    ("total_input_tokens", "Total input tokens"),
    ("total_output_tokens", "Total generated tokens"),
    ("request_throughput", "Request throughput (req/s)"),
    ("output_throughput", "Output token throughput (tok/s)"),
    ("total_token_throughput", "Total token throughput (tok/s)"),
    ("mean_ttft_ms", "Mean TTFT (ms)"),
    ("p99_ttft_ms", "P99 TTFT (ms)"),
    ("mean_tpot_ms", "Mean TPOT (ms)"),
    ("p99_tpot_ms", "P99 TPOT (ms)"),
    ("mean_itl_ms", "Mean ITL (ms)"),
    ("p99_itl_ms", "P99 ITL (ms)"),
    ("mean_e2el_ms", "Mean E2EL (ms)"),
)


@handle_errors
def bench(
    base_url: Annotated[str, typer.Option(help="The server, e.g. http://127.0.0.1:8000.")],
    workload: Annotated[
        str, typer.Option(help="Preset name (see `stepgap workloads`) or a .toml file.")
    ] = DEFAULT_WORKLOAD,
    label: Annotated[
        str, typer.Option(help="Run name and mode in run.json (e.g. sync, overlap).")
    ] = "endpoint",
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory to write (default: runs/<workload>-<label>-<time>)."),
    ] = None,
    api: Annotated[str, typer.Option(help=f"Server kind, for token ids: {API_NAMES}.")] = "vllm",
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the first of /v1/models).")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(help="Requests in flight at most (default: no limit).")
    ] = None,
    request_rate: Annotated[
        float | None,
        typer.Option(
            help="Requests/s, Poisson; inf: all at once (default: the workload's arrivals)."
        ),
    ] = None,
    num_requests: Annotated[int | None, typer.Option(help="Override the request count.")] = None,
    output_len: Annotated[int | None, typer.Option(help="Override max output tokens.")] = None,
    logprobs: Annotated[
        int | None, typer.Option(help="Top logprobs per token (2+: near-tie margins too).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 600.0,
    force: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Stream a workload's requests (token-id prompts) to an OpenAI-compatible server (vLLM,
    SGLang, FastDeploy, TensorRT-LLM or `stepgap serve`) and save a run directory.

    Records each token id and its arrival time; prints `vllm bench serve`'s figures. Two
    runs of the same workload (e.g. labels sync and overlap) go into `stepgap compare`.
    Exits 1 if any request failed (the run is saved, marked incomplete)."""
    chosen = load_workload(workload).with_overrides(
        num_requests=num_requests, output_len=output_len
    )
    config = BenchConfig(
        base_url=base_url,
        api=api,  # type: ignore[arg-type]
        model=model,
        max_concurrency=max_concurrency,
        request_rate=request_rate,
        logprobs=logprobs,
        timeout_s=timeout,
        label=label,
    )
    target = check_run_target(out, force) if out else default_run_dir(f"{chosen.name}-{label}")
    client = _client()
    outcome = asyncio.run(client.run_benchmark(config, bench_requests(chosen, request_rate)))
    run = to_run_data(outcome, config, chosen)
    target = save_run(run, target, force)
    _report(run, outcome, target, json_output)
    if not run.complete:
        err_console.print(
            f"[bold red]error:[/] {run.meta['incomplete_reason']}: {_first_error(run)}"
        )
        raise typer.Exit(1)


def _client():
    """The HTTP client, or a one-line error naming what to install."""
    try:
        from stepgap.bench import client
    except ModuleNotFoundError as missing:
        raise UsageError(
            f"stepgap bench needs {missing.name}: pip install 'stepgap[bench]'"
        ) from None
    return client


def _report(run: RunData, outcome: BenchOutcome, target: Path, json_output: bool) -> None:
    serving = run.meta["serving"]
    if json_output:
        print_json({"out": str(target), "serving": serving, "summary": run.summary})
        return
    console.print(
        f"{run.meta['workload']['label']} against {run.meta['endpoint']['url']} ({outcome.model})"
    )
    width = max(len(label) for _, label in SHOWN)
    for key, label in SHOWN:
        console.print(f"  {label:<{width}}  {fmt(serving.get(key))}", highlight=False)
    recorded = sum(len(t) for t in run.tokens.values())
    console.print(f"token ids recorded: {recorded}; saved: {target}")


def _first_error(run: RunData) -> str:
    errors = run.meta.get("errors") or [{}]
    return str(errors[0].get("error", "unknown error"))
