"""`stepgap predict`: what the overlap schedule would buy, predicted from a sync run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepgap.cli.common import (
    UsageError,
    console,
    fmt,
    handle_errors,
    plain,
    print_json,
    table,
    warn,
)

if TYPE_CHECKING:
    from stepgap.predict.floor import Floor
    from stepgap.predict.prediction import Prediction
    from stepgap.predict.trace import TracePrediction
    from stepgap.predict.validate import MetricError
    from stepgap.runs import RunData

MODEL_NOTE = (
    "model: the host launches step N+1, then waits for and post-processes N while the "
    "device runs; the device starts N+1 at the later of (end of N + floor) and (its "
    "launch + launch latency); the engine's scheduler replays the requests (stops and "
    "freed slots seen a step late); each step costs a measured sync step of its shape."
)

BOUND_NOTE = (
    "bound (no gaps): the same steps with every between-step gap removed (no host cost, "
    "launch latency or floor): what no schedule can beat"
)


@handle_errors
def predict(
    run: Annotated[
        Path,
        typer.Argument(
            help="A sync run directory (or a group holding one), or a `stepgap analyze` run."
        ),
    ],
    against: Annotated[
        Path | None,
        typer.Option(help="A measured overlap run: print predicted vs measured, with errors."),
    ] = None,
    floor_us: Annotated[
        float | None,
        typer.Option(help="The device's floor between two queued steps, µs (default 5)."),
    ] = None,
    floor_from: Annotated[
        Path | None,
        typer.Option(help="Measure the floor: the median decode gap of this overlap run."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Predict what the overlap schedule would buy from a sync run; --against checks the
    prediction against a measured overlap run.

    The sync run's requests are replayed under the overlap loop's rules (the host launches
    step N+1, then waits for and post-processes N) with each step's measured host and
    device times: per-step gaps, idle fraction, TPOT / ITL / TTFT, throughput and wall
    time. On an analyzed trace: the bound (every gap removed) and, for a sync trace, the
    replay."""
    from stepgap.predict.trace import is_trace_run

    floor = _floor(floor_us, floor_from)
    source = _sync_member(run)
    if is_trace_run(source):
        if against is not None:
            raise UsageError("--against needs a reference-engine sync run, not a trace")
        _predict_trace(source, floor, json_output)
        return
    _predict_run(source, floor, against, json_output)


def _floor(floor_us: float | None, floor_from: Path | None) -> Floor:
    from stepgap.predict.floor import Floor, FloorSource, default_floor, floor_from_run
    from stepgap.runs import load_run

    if floor_us is not None and floor_from is not None:
        raise UsageError("give the floor one way: --floor-us or --floor-from, not both")
    if floor_from is not None:
        return floor_from_run(load_run(floor_from))
    if floor_us is not None:
        return Floor(floor_us, FloorSource.GIVEN)
    return default_floor()


def _sync_member(path: Path) -> RunData:
    """The run at `path`; in a group, its sync run."""
    from stepgap.runs import RunError, load_runs

    runs = load_runs(path)
    if len(runs) == 1:
        return runs[0]
    sync = [r for r in runs if r.mode == "sync"]
    if not sync:
        modes = ", ".join(r.mode for r in runs)
        raise RunError(f"{path} is a group without a sync run (it has: {modes})")
    return sync[0]


def _predict_run(run: RunData, floor: Floor, against: Path | None, json_output: bool) -> None:
    from stepgap.predict.prediction import predict_overlap
    from stepgap.predict.validate import errors
    from stepgap.runs import load_run

    prediction = predict_overlap(run, floor)
    rows = errors(prediction, load_run(against)) if against is not None else None
    if json_output:
        data: dict[str, Any] = prediction.to_dict()
        if rows is not None:
            data["against"] = str(against)
            data["errors"] = [row.to_dict() for row in rows]
        print_json(data)
        return
    _print_prediction(prediction)
    if rows is not None:
        _print_errors(rows, str(against))


def _print_prediction(prediction: Prediction) -> None:
    from stepgap.metric_registry import BY_KEY
    from stepgap.predict.prediction import SHOWN_KEYS

    rows = [
        [
            BY_KEY[key].label,
            prediction.sync.get(key),
            prediction.predicted.get(key),
            prediction.ratio(key),
            prediction.bound.get(key),
            prediction.bound_ratio(key),
        ]
        for key in SHOWN_KEYS
    ]
    heads = ["metric", "sync (measured)", "overlap (predicted)", "predicted/sync"]
    heads += ["bound (no gaps)", "bound/sync"]
    console.print(table(f"{prediction.run}: overlap predicted", heads, rows))
    console.print(plain(f"floor: {prediction.floor.describe()}"), style="dim")
    console.print(plain(BOUND_NOTE), style="dim")
    costs = f"{prediction.exact_costs} steps costed by a sync step of their shape"
    console.print(plain(f"{costs}, {prediction.nearest_costs} by the nearest"), style="dim")
    console.print(plain(MODEL_NOTE), style="dim")
    for note in prediction.notes:
        warn(note, "note")


def _print_errors(rows: tuple[MetricError, ...], against: str) -> None:
    body = [
        [row.label, row.sync, row.predicted, row.measured, _pct(row.relative_error)] for row in rows
    ]
    heads = ["metric", "sync", "overlap predicted", "overlap measured", "error"]
    console.print(table(f"predicted vs measured ({against})", heads, body))
    console.print(plain("error: predicted / measured - 1"), style="dim")


def _predict_trace(run: RunData, floor: Floor, json_output: bool) -> None:
    from stepgap.predict.trace import predict_trace

    prediction = predict_trace(run, floor)
    if json_output:
        print_json(prediction.to_dict())
        return
    _print_trace(prediction)


def _print_trace(prediction: TracePrediction) -> None:
    from stepgap.predict.trace import MISSING

    heads = ["group", "steps", "span", "gaps", "bound span", "bound speed-up"]
    heads += ["replay span", "replay speed-up", "replay gap p50"]
    rows = [
        [
            g.group,
            g.steps,
            g.span_us,
            g.gap_total_us,
            g.bound_span_us,
            g.bound_speedup,
            g.replay_span_us,
            g.replay_speedup,
            g.replay_gap_p50_us,
        ]
        for g in prediction.groups
    ]
    title = f"{prediction.run}: what overlap could buy (trace; times in µs)"
    console.print(table(title, heads, rows))
    if prediction.mode != "sync":
        console.print(
            plain(f"no replay: the trace's mode is {prediction.mode} (analyze --mode sync)"),
            style="dim",
        )
    console.print(plain(f"floor: {prediction.floor.describe()}"), style="dim")
    console.print(plain(BOUND_NOTE), style="dim")
    warn(f"a trace lacks {MISSING}", "note")


def _pct(value: float) -> str:
    return fmt(value) if math.isnan(value) else f"{value:+.1%}"
