"""`stepgap serve`: the reference engine behind an OpenAI-compatible HTTP server."""

from __future__ import annotations

from typing import Annotated

import typer

from reference_engine import model_config
from stepgap.cli.common import UsageError, err_console, handle_errors
from stepgap.serve.config import ServeConfig
from stepgap.workloads import DEFAULT_WORKLOAD, load_workload


@handle_errors
def serve(
    workload: Annotated[
        str,
        typer.Option(help="Preset or .toml: its model, slot count and max_model_len."),
    ] = DEFAULT_WORKLOAD,
    model: Annotated[
        str | None, typer.Option(help="Model preset instead of the workload's.")
    ] = None,
    mode: Annotated[str, typer.Option(help="Schedule: sync or overlap.")] = "sync",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one; the URL is printed).")] = 8000,
    max_num_seqs: Annotated[
        int | None, typer.Option(help="Engine slots (default: the workload's concurrency).")
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(help="Prompt + output tokens per request, +1.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    served_model_name: Annotated[
        str | None, typer.Option(help="Model name clients use (default: the preset's).")
    ] = None,
    max_logprobs: Annotated[
        int, typer.Option(help="Most logprobs a request may ask for (0: none computed).")
    ] = 20,
    fault: Annotated[
        list[str] | None,
        typer.Option(hidden=True, help="TESTING ONLY: plant a fault in the overlap loop."),
    ] = None,
) -> None:
    """Serve the reference engine over HTTP: /v1/completions (streaming, token-id prompts,
    logprobs, token ids returned as vLLM does), /v1/models, /health, /metrics.

    Run it with --mode sync, then --mode overlap, measure each with `stepgap bench`, and
    `stepgap compare` the two runs. Ctrl-C stops it; open streams may finish first."""
    chosen = load_workload(workload)
    config = ServeConfig(
        model=model_config(model) if model else chosen.model_config(),
        mode=mode,  # type: ignore[arg-type]
        host=host,
        port=port,
        max_num_seqs=max_num_seqs or chosen.concurrency,
        max_model_len=max_model_len or chosen.max_model_len,
        device=device,
        faults=tuple(fault or ()),  # type: ignore[arg-type]
        served_model_name=served_model_name,
        max_logprobs=max_logprobs,
    )
    run_server = _server()
    if config.faults:
        faults = ", ".join(f.value for f in config.faults)
        err_console.print(f"[yellow]warning:[/] planted fault(s) {faults}: testing only")

    def ready(url: str) -> None:
        print(f"stepgap serve: {config.model_name} ({config.mode.value}) on {url}", flush=True)

    run_server(config, ready)


def _server():
    """The server (torch, FastAPI, uvicorn: loaded only to serve), or a one-line error."""
    try:
        from stepgap.serve.server import serve
    except ModuleNotFoundError as missing:
        raise UsageError(
            f"stepgap serve needs {missing.name}: pip install 'stepgap[serve]'"
        ) from None
    return serve
