"""Instrumentation overhead: decode step time with instrumentation on vs off, side by side.

Builds the engine once and alternates on/off runs of the same decode-heavy workload
(all requests at once, every request running to max_tokens, so each run has the same
steps). Decode step time = host time from the first decode step's completion to the last
step's completion, over the decode steps between — measured the same way whether or not
instrumentation is on. Prints the medians over repetitions and their ratio.

    python benchmarks/instrument_overhead.py --device cuda --reps 7
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from reference_engine import MODES, Engine
from stepgap.instrument import NvtxProbe
from stepgap.runner import RunConfig
from stepgap.workloads import load_workload


def decode_step_us(engine: Engine, workload, mode: str) -> float:
    completions: list[float] = []

    def on_step(record) -> None:
        if record.step.kind.value == "decode":
            completions.append(time.perf_counter())

    engine.run(workload.requests(), mode, on_step)
    return (completions[-1] - completions[0]) / (len(completions) - 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workload", default="ernie-4.5-21b-a3b-tp4")
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-requests", type=int, default=64)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=256)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (one GPU each)")
    args = parser.parse_args()
    base = load_workload(args.workload)
    workload = base.with_overrides(
        num_requests=args.num_requests,
        concurrency=min(base.concurrency, args.num_requests),
        input_len=args.input_len,
        input_len_min=None if base.input_len_min is None else 1,
        output_len=args.output_len,
        arrival="all",
        ignore_eos=True,
        model_overrides={**base.model_overrides, "num_layers": args.num_layers},
    )
    engine = Engine(
        RunConfig(workload, device=args.device, tensor_parallel=args.tp).engine_config()
    )
    engine.run(workload.with_overrides(output_len=8).requests(), "sync")  # warm-up
    times: dict[tuple[str, bool], list[float]] = {}
    for rep in range(args.reps):
        for mode in MODES:
            order = (True, False) if rep % 2 == 0 else (False, True)  # alternate: no drift bias
            for enabled in order:
                engine.probe = NvtxProbe(enabled=enabled)
                times.setdefault((mode, enabled), []).append(decode_step_us(engine, workload, mode))
    device = engine.device.describe()["name"]
    print(
        f"device {device}; torch {torch.__version__}; python {platform.python_version()}; "
        f"model {workload.model_config().name}; {workload.num_requests} requests x "
        f"{workload.output_len} tokens; {args.reps} reps per cell"
    )
    print(f"{'mode':8s} {'on: median step µs':>20s} {'off: median step µs':>20s} {'on/off':>8s}")
    for mode in MODES:
        on = statistics.median(times[(mode, True)])
        off = statistics.median(times[(mode, False)])
        print(f"{mode:8s} {on:20.1f} {off:20.1f} {on / off:8.4f}")
    engine.close()


if __name__ == "__main__":
    main()
