"""`stepgap compare`: two runs side by side, with ratios and token identity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepgap.cli.common import console, handle_errors, print_json, table
from stepgap.compare import compare_runs
from stepgap.identity import NEAR_TIE_LOGIT_MARGIN


@handle_errors
def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory.")],
    run_b: Annotated[Path, typer.Argument(help="Run directory to compare against it.")],
    near_tie: Annotated[
        float, typer.Option(help="Top-2 logit margin under which a divergence is a near-tie.")
    ] = NEAR_TIE_LOGIT_MARGIN,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Print the metrics of RUN_A and RUN_B side by side (B/A ratios) and whether their
    tokens are identical; on divergence, the first differing request and position."""
    result = compare_runs(run_a, run_b, near_tie)
    if json_output:
        print_json(result.to_dict())
        return
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    a, b = result.names
    rows = [[r["label"], r["a"], r["b"], r["ratio"]] for r in result.rows]
    console.print(table(f"{a} vs {b}", ["metric", f"A: {a}", f"B: {b}", "B/A"], rows))
    identity = result.identity
    if identity is None:
        console.print("tokens: not recorded in either run (analyzed traces carry no tokens)")
        return
    colour = "green" if identity.identical else "red"
    console.print(f"tokens: [{colour}]{identity.describe()}[/]")
