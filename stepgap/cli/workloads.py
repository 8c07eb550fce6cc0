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
        arrival = "at once" if w.arrival == "all" else f"poisson {w.rate_per_s:g}/s"
        name = w.name + (" *" if w.scaled_from else "")
        row = [name, w.model, w.tensor_parallel, w.concurrency, lengths, w.output_len]
        rows.append([*row, w.num_requests, arrival])
    columns = ["workload", "model", "TP", "conc.", "input", "output", "reqs", "arrivals"]
    console.print(table("workloads", columns, rows))
    console.print("* scaled: same shape on a tiny model. TP > 1 presets run at TP 1 for now.")
    for w in PRESETS.values():
        console.print(f"- {w.label}: {w.description}", highlight=False, soft_wrap=True)
