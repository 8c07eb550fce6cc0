"""Profile a third-party model's greedy decode loop: a transformers Llama with a random config.

Builds `LlamaForCausalLM` from a small `LlamaConfig` (random weights, nothing downloaded),
prefills a batch of prompts, then decodes token by token under `torch.profiler` with
`prof.step()` after each step, so every decode step is a `ProfilerStep#N` range — the
way a PyTorch user profiles a loop. Each step copies its tokens to the host, as a
serving loop does. The Chrome trace is written gzipped; keep it under 2 MB to commit it
as tests/data/analyze/hf_llama_decode.trace.json.gz.

    OUT=/tmp/out python scripts/make_hf_trace.py               # CUDA (the fixture)
    OUT=/tmp/out python scripts/make_hf_trace.py --device cpu  # host ranges only
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

FIXTURE_NAME = "hf_llama_decode.trace.json.gz"
SIZE_LIMIT = 2 << 20


def build_model(device: str, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


@torch.inference_mode()
def decode(model, device: str, batch: int, prompt_len: int, steps: int, warmup: int, path: Path):
    prompts = torch.randint(0, model.config.vocab_size, (batch, prompt_len), device=device)
    out = model(prompts, use_cache=True)
    cache, tokens = out.past_key_values, out.logits[:, -1].argmax(-1)
    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    window = schedule(wait=0, warmup=warmup, active=steps, repeat=1)
    emitted = []
    with profile(activities=activities, schedule=window) as prof:
        for _ in range(warmup + steps):
            out = model(tokens[:, None], past_key_values=cache, use_cache=True)
            cache, tokens = out.past_key_values, out.logits[:, -1].argmax(-1)
            emitted.append(tokens.to("cpu"))  # the host needs each step's tokens
            prof.step()
    prof.export_chrome_trace(str(path))
    return torch.stack(emitted, dim=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=16, help="profiled decode steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: pass --device cpu for a host-only trace", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers renames kwargs
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    path = out / FIXTURE_NAME
    model = build_model(args.device, args.seed)
    tokens = decode(model, args.device, args.batch, args.prompt_len, args.steps, args.warmup, path)
    size = path.stat().st_size
    print(
        f"wrote {path} ({size / 1024:.0f} KiB): {args.steps} profiled decode steps, "
        f"batch {args.batch}, tokens {tuple(tokens.shape)} on {args.device}"
    )
    print(f"torch {torch.__version__}, transformers {_transformers_version()}")
    if size > SIZE_LIMIT:
        print(f"warning: over {SIZE_LIMIT >> 20} MB; lower --steps before committing it")
    return 0


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


if __name__ == "__main__":
    sys.exit(main())
