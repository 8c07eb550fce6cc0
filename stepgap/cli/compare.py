"""`stepgap compare`: two runs side by side, with ratios, their noise, and token identity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stepgap.cli.common import console, handle_errors, labelled, plain, print_json, warn
from stepgap.identity import NEAR_TIE_LOGIT_MARGIN

if TYPE_CHECKING:
    from stepgap.compare import Comparison


@handle_errors
def compare(
    run_a: Annotated[
        Path, typer.Argument(help="Baseline run directory, or a group (`run --mode both`).")
    ],
    run_b: Annotated[
        Path | None,
        typer.Argument(
            help="Run (or group) to compare against it; left out, RUN_A's group compares its "
            "overlap run against its sync run."
        ),
    ] = None,
    near_tie: Annotated[
        float, typer.Option(help="Top-2 logit margin under which a divergence is a near-tie.")
    ] = NEAR_TIE_LOGIT_MARGIN,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Print the metrics of RUN_A and RUN_B side by side: B/A ratios with their noise
    intervals, and whether their tokens are identical; on divergence, the first differing
    request and position. Groups compare mode by mode."""
    from stepgap.compare import compare_runs

    comparisons = compare_runs(run_a, run_b, near_tie)
    if json_output:
        dicts = [c.to_dict() for c in comparisons]
        print_json(dicts[0] if len(dicts) == 1 else {"comparisons": dicts})
        return
    for comparison in comparisons:
        _print(comparison)


def _print(comparison: Comparison) -> None:
    from stepgap.cli.ratio_table import NOISE_NOTE, ratio_table

    for warning in comparison.warnings:
        warn(warning)
    a, b = comparison.names
    console.print(ratio_table(f"{a} vs {b}", (f"A: {a}", f"B: {b}"), "B/A", comparison.rows))
    console.print(plain(NOISE_NOTE), style="dim")
    if comparison.ranks:
        from stepgap.cli.rank_table import rank_table
        from stepgap.rank_view import EXPLANATION

        names = (f"A: {a}", f"B: {b}")
        console.print(rank_table(f"{a} vs {b}: per rank", names, "B/A", comparison.ranks))
        console.print(plain(EXPLANATION), style="dim")
    identity = comparison.identity
    if identity is None:
        console.print("tokens: not recorded in either run (analyzed traces carry no tokens)")
        return
    colour = "green" if identity.identical else "red"
    console.print(labelled("tokens", "", identity.describe()), style=colour)
