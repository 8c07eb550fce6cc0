"""Instantiate the full-size ERNIE-4.5-21B-A3B preset on one GPU and decode a few steps
under both schedules; prints the parameter count and whether the tokens are identical.

    python scripts/full_preset_check.py [--preset ernie-4.5-21b-a3b] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from reference_engine import MODES, Engine, EngineConfig, Request, SamplingParams, model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="ernie-4.5-21b-a3b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=8, help="tokens per request")
    args = parser.parse_args()
    config = model_config(args.preset)
    started = time.perf_counter()
    engine = Engine(EngineConfig(config, max_num_seqs=4, max_model_len=64, device=args.device))
    built_s = time.perf_counter() - started
    params = sum(p.numel() for p in engine.runner.model.parameters())
    print(
        f"preset {config.name}: {params / 1e9:.3f} B parameters "
        f"(shape count {config.num_parameters() / 1e9:.3f} B), built in {built_s:.1f} s"
    )
    if args.device == "cuda":
        print(
            f"GPU memory allocated: {torch.cuda.memory_allocated() / 2**30:.1f} GiB on "
            f"{torch.cuda.get_device_name()}"
        )
    tokens = {}
    for mode in MODES:
        requests = [
            Request(
                i,
                list(range(5 + i, 21 + i)),
                SamplingParams(
                    max_tokens=args.steps,
                    temperature=0.8 * (i % 2),
                    top_k=20,
                    seed=i,
                    ignore_eos=True,
                ),
            )
            for i in range(4)
        ]
        output = engine.run(requests, mode)
        tokens[mode] = {r.request_id: r.output for r in output.requests}
        print(
            f"{mode:8s}: {len(output.steps)} steps, wall {output.wall_s * 1e3:.1f} ms, "
            f"tokens {tokens[mode]}"
        )
    same = tokens["sync"] == tokens["overlap"]
    print(f"tokens identical across schedules: {same}")
    engine.close()
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
