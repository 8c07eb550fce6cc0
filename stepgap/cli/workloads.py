"""`stepgap workloads`: the built-in workloads and what they contain."""

from __future__ import annotations

from typing import Annotated

import typer

from stepgap.cli.common import console, print_json, table
from stepgap.workloads import PRESETS


def workloads(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """List the workload presets: model, TP, concurrency, lengths, requests, arrivals."""
    if json_output:
        print_json({name: w.describe() for name, w in PRESETS.items()})
        return
    rows = []
    for w in PRESETS.values():
        lengths = f"{w.input_len_min}-{w.input_len}" if w.input_len_min else str(w.input_len)
        arrival = "all at once" if w.arrival == "all" else f"poisson {w.rate_per_s:g}/s"
        tp = f"TP{w.tensor_parallel}" + (" (runs at TP1)" if w.tensor_parallel > 1 else "")
        rows.append(
            [
                w.label,
                w.model,
                tp,
                w.concurrency,
                lengths,
                w.output_len,
                w.num_requests,
                arrival,
                w.description,
            ]
        )
    columns = [
        "workload",
        "model",
        "parallel",
        "concurrency",
        "input",
        "output",
        "requests",
        "arrivals",
        "what",
    ]
    console.print(table("workloads", columns, rows))
