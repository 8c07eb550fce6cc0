"""Decode step time against the HBM roofline, per preset x concurrency x context (GPU).

For each preset (random seeded weights, bf16, the engine's kernels) and each concurrency,
every slot sits at the given context and one decode step — forward + sampling, exactly
what the engine's decode graph runs between its input and output copies — is captured in
a CUDA graph and replayed. Reported per row:

- step time: median over replays, each timed with CUDA events;
- bytes the step must read: every weight it touches once (attention, dense FFN, router,
  shared experts, LM head, and the routed experts *hit* this step, counted from the step's
  own routing) plus the KV cache of every slot up to its context;
- the card's device-to-device copy bandwidth, measured here (bytes read + written);
- roofline = bytes / bandwidth, and the fraction roofline / step time;
- a breakdown, each part captured and replayed on its own over all its layers, with its
  norm: attention (input norm, projections, rotary, cache write, decode attention), MoE
  layers and dense FFN layers (post-attention norm, router, experts), LM head (final norm
  + logits), sampling. Parts sum to about the step (residual adds are not in any part).

    python benchmarks/decode_roofline.py --out roofline.json          # both presets
    python benchmarks/decode_roofline.py --preset ernie-4.5-21b-a3b --concurrency 64

No public batch-1…64 sweep of these models exists, so this table is itself a result.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reference_engine.config import ModelConfig, model_config
from reference_engine.kernels import default_backend
from reference_engine.kv_cache import KVCache
from reference_engine.model import MoEDecoder
from reference_engine.moe import MoE, route
from reference_engine.sampler import SamplingTensors, sample

BF16 = 2  # bytes
NOMINAL_TB_S = 4.8  # H200 datasheet HBM bandwidth

# preset -> (layers, [(concurrency, context)]): as many GLM layers as fit one H200 with
# its KV cache; GLM at concurrency 64 and context 5000 would need 37 GB more.
PLANS = {
    "ernie-4.5-21b-a3b": (28, [(1, 2250), (4, 2250), (16, 2250), (64, 2250)]),
    "glm-4.5-air": (28, [(1, 5000), (4, 5000), (16, 5000), (64, 1000)]),
}


@dataclass
class Row:
    preset: str
    layers: int
    concurrency: int
    context: int
    step_us: float
    weight_bytes: int
    kv_bytes: int
    experts_hit_per_layer: float
    roofline_us: float
    fraction: float
    fraction_nominal: float
    attention_us: float
    moe_us: float
    dense_us: float
    lm_head_us: float
    sampling_us: float


def copy_bandwidth_tb_s(gib: int = 4) -> float:
    """Device-to-device copy bandwidth, bytes read + written per second (median of 10)."""
    source = torch.empty(gib << 30, dtype=torch.uint8, device="cuda").random_()
    target = torch.empty_like(source)
    times = [timed_us(lambda: target.copy_(source)) for _ in range(12)][2:]
    return 2 * source.numel() / statistics.median(times) / 1e6


def timed_us(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3


def graph_median_us(fn, replays: int = 20) -> float:
    """Capture `fn` in a CUDA graph (after two warm-up calls) and time its replays."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    times = [timed_us(graph.replay) for _ in range(replays)]
    del graph
    return statistics.median(times)


def greedy_params(slots: int, context: int) -> SamplingTensors:
    """The seed's workloads decode greedily: temperature 0 (the kernel's argmax path)."""
    zeros = torch.zeros(slots, device="cuda")
    ints = torch.zeros(slots, dtype=torch.int64, device="cuda")
    return SamplingTensors(zeros, ints, zeros + 1.0, ints + 7, ints + context)


# -- bytes -----------------------------------------------------------------------------------
def layer_weight_bytes(config: ModelConfig, layer: int, experts_hit: float) -> float:
    h, d = config.hidden_size, config.head_dim
    qkv_out = d * (config.num_heads + 2 * config.num_kv_heads)
    attention = h * qkv_out + config.num_heads * d * h + (qkv_out if config.qkv_bias else 0)
    norms = 2 * h
    if layer < config.first_moe_layer:
        return (attention + norms + 3 * h * config.dense_intermediate_size) * BF16
    expert = 3 * h * config.moe_intermediate_size
    routed = experts_hit * expert + config.num_shared_experts * expert
    return (attention + norms + routed + config.num_experts * (h + 1)) * BF16


def weight_bytes(config: ModelConfig, experts_hit: float, slots: int) -> int:
    per_layer = sum(layer_weight_bytes(config, i, experts_hit) for i in range(config.num_layers))
    lm_head = config.vocab_size * config.hidden_size * BF16
    embed_rows = slots * config.hidden_size * BF16
    return int(per_layer + lm_head + embed_rows + config.hidden_size * BF16)


def kv_bytes(config: ModelConfig, slots: int, context: int) -> int:
    per_token = config.num_layers * 2 * config.num_kv_heads * config.head_dim * BF16
    return slots * context * per_token


def experts_hit(model: MoEDecoder, tokens, positions, cache) -> float:
    """Mean number of distinct routed experts per MoE layer in this very step."""
    hits: list[int] = []

    def record(module: MoE, inputs) -> None:
        _, ids = route(
            inputs[0],
            module.router,
            module.correction_bias,
            module.top_k,
            module.router_kind,
            module.norm_topk_prob,
            module.scale,
        )
        hits.append(int(ids.unique().numel()))

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, MoE)]
    model.decode(tokens, positions, cache)
    for handle in handles:
        handle.remove()
    return statistics.mean(hits) if hits else 0.0


# -- timing ----------------------------------------------------------------------------------
def breakdown_us(model: MoEDecoder, tokens, positions, cache) -> dict[str, float]:
    """Each part of the step captured and replayed on its own, over all its layers."""
    slots = tokens.shape[0]
    rows = torch.arange(slots, device="cuda") * cache.max_len + positions
    x = model.layers[0].input_norm(model.embed(tokens))  # normalised, as each block sees it
    layers = list(model.layers)
    moe = [layer for layer in layers if isinstance(layer.ffn, MoE)]
    dense = [layer for layer in layers if not isinstance(layer.ffn, MoE)]
    logits = model.logits(x)
    params = greedy_params(slots, int(positions[0]) + 1)

    def attention() -> None:
        for layer in layers:
            layer.attn.decode(layer.input_norm(x), positions, cache, rows)

    def ffn(group) -> None:
        for layer in group:
            layer.ffn(layer.post_norm(x))

    return {
        "attention_us": graph_median_us(attention),
        "moe_us": graph_median_us(lambda: ffn(moe)) if moe else 0.0,
        "dense_us": graph_median_us(lambda: ffn(dense)) if dense else 0.0,
        "lm_head_us": graph_median_us(lambda: model.logits(x)),
        "sampling_us": graph_median_us(lambda: sample(logits, params, model_backend(model))),
    }


def model_backend(model: MoEDecoder):
    return next(m.backend for m in model.modules() if isinstance(m, MoE))


def measure(preset: str, model: MoEDecoder, slots: int, context: int, bandwidth: float) -> Row:
    config = model.config
    cache = KVCache(config, slots, context + 2, torch.device("cuda"), torch.bfloat16)
    cache.data.normal_(0.0, 1.0)  # never time on zeros
    generator = torch.Generator(device="cuda").manual_seed(slots * 7919 + context)
    tokens = torch.randint(3, config.vocab_size, (slots,), device="cuda", generator=generator)
    positions = torch.full((slots,), context - 1, dtype=torch.int64, device="cuda")
    params = greedy_params(slots, context)
    backend = model_backend(model)
    with torch.inference_mode():
        hit = experts_hit(model, tokens, positions, cache)
        step = graph_median_us(
            lambda: sample(model.decode(tokens, positions, cache), params, backend)
        )
        parts = breakdown_us(model, tokens, positions, cache)
    weights, kv = weight_bytes(config, hit, slots), kv_bytes(config, slots, context)
    roofline = (weights + kv) / bandwidth / 1e6
    return Row(
        preset,
        config.num_layers,
        slots,
        context,
        step,
        weights,
        kv,
        hit,
        roofline,
        roofline / step,
        (weights + kv) / (NOMINAL_TB_S * 1e6) / step,
        **parts,
    )


def build(preset: str, layers: int) -> MoEDecoder:
    config = model_config(preset, num_layers=layers) if layers else model_config(preset)
    model = MoEDecoder.build(config, 8192, torch.device("cuda"), torch.bfloat16, seed=0)
    model.use_kernels(default_backend("cuda"))
    return model


def print_table(rows: list[Row], bandwidth: float) -> None:
    print(
        f"\ncopy bandwidth {bandwidth:.2f} TB/s (nominal {NOMINAL_TB_S}); fraction = "
        "(bytes / measured bandwidth) / step time"
    )
    head = (
        f"{'preset':18s} {'L':>3s} {'conc':>4s} {'ctx':>5s} {'step µs':>9s} {'GB':>6s} "
        f"{'hit':>5s} {'roof µs':>8s} {'frac':>5s} {'attn':>7s} {'moe':>7s} {'dense':>6s} "
        f"{'lmhead':>6s} {'sample':>6s}"
    )
    print(head)
    for r in rows:
        print(
            f"{r.preset:18s} {r.layers:3d} {r.concurrency:4d} {r.context:5d} {r.step_us:9.1f} "
            f"{(r.weight_bytes + r.kv_bytes) / 1e9:6.2f} {r.experts_hit_per_layer:5.1f} "
            f"{r.roofline_us:8.1f} {r.fraction:5.2f} {r.attention_us:7.0f} {r.moe_us:7.0f} "
            f"{r.dense_us:6.0f} {r.lm_head_us:6.0f} {r.sampling_us:6.0f}"
        )


def machine() -> dict:
    props = torch.cuda.get_device_properties(0)
    import triton

    return {
        "device": props.name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(PLANS))
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--layers", type=int, default=0, help="override the plan's layers")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("decode_roofline needs a CUDA GPU", file=sys.stderr)
        return 2
    env = machine()
    print(" ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    bandwidth = copy_bandwidth_tb_s()
    rows = []
    for preset in args.preset or list(PLANS):
        layers, plan = PLANS[preset]
        model = build(preset, args.layers or layers)
        for slots, context in plan:
            if args.concurrency and slots not in args.concurrency:
                continue
            rows.append(measure(preset, model, slots, context, bandwidth))
            torch.cuda.empty_cache()  # the row's KV cache and graphs
            print_table(rows[-1:], bandwidth)
        del model
        torch.cuda.empty_cache()
    print_table(rows, bandwidth)
    if args.out:
        payload = {
            "machine": env,
            "copy_bandwidth_tb_s": bandwidth,
            "rows": [asdict(r) for r in rows],
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
