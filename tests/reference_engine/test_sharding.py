"""Tensor-parallel sharding in one process: TP sizes the model must divide, and shards that
reassemble exactly into the weights of TP 1 (no process group needed to build a shard)."""

import pytest
import torch

from reference_engine import ConfigError, EngineConfig, model_config
from reference_engine.model import MoEDecoder
from reference_engine.parallel.group import TensorParallel
from reference_engine.parallel.sharding import shard_of

# GLM-4.5-Air's attention and expert layout (96 q / 8 kv heads, 128 experts, top 8) at the
# tiny family's widths: what TP 8 must split (issue 18)
GLM_TP8 = {"num_heads": 96, "num_kv_heads": 8, "num_experts": 128, "num_experts_per_tok": 8}


def build(config, tp=None):
    args = (config, 16, torch.device("cpu"), torch.float32, 3)
    return dict(MoEDecoder.build(*args, *([tp] if tp else [])).named_parameters())


def reassemble(shards, name, config, size):
    shard = shard_of(name, config)
    sections = [s // size for s in shard.sections]
    pieces = [params[name].split(sections, shard.dim) for params in shards]
    per_section = [torch.cat([p[i] for p in pieces], shard.dim) for i in range(len(sections))]
    return torch.cat(per_section, shard.dim)


@pytest.mark.parametrize(
    ("name", "overrides", "size"),
    [("glm-4.5-air-tiny", {}, 2), ("ernie-4.5-tiny", {}, 2), ("glm-4.5-air-tiny", GLM_TP8, 8)],
)
def test_shards_reassemble_into_the_weights_of_tp1(name, overrides, size):
    config = model_config(name, **overrides)
    full = build(config)
    shards = [build(config, TensorParallel(rank, size, group=object())) for rank in range(size)]
    for param_name, weight in full.items():
        if shard_of(param_name, config) is None:
            assert all(torch.equal(s[param_name], weight) for s in shards), param_name
        else:
            assert torch.equal(reassemble(shards, param_name, config, size), weight), param_name
            assert shards[0][param_name].numel() * size == weight.numel(), param_name


def test_glm_air_at_tp8_gives_each_rank_one_kv_head_and_twelve_q_heads():
    config = model_config("glm-4.5-air-tiny", **GLM_TP8)
    shard = build(config, TensorParallel(5, 8, group=object()))
    d = config.head_dim
    assert shard["layers.0.attn.qkv.weight"].shape[0] == (12 + 2 * 1) * d
    assert shard["layers.1.ffn.gate_up"].shape == (128, 64, 2 * 32 // 8)  # every expert, I/8


@pytest.mark.parametrize(
    ("name", "size", "what"),
    [
        ("glm-4.5-air-tiny", 4, "num_heads (6), num_kv_heads (2)"),
        ("ernie-4.5-tiny", 3, "num_heads (4)"),
        ("ernie-4.5-21b-a3b", 8, "num_heads (20)"),
        ("glm-4.5-air", 16, "num_kv_heads (8)"),
    ],
)
def test_a_tp_size_that_does_not_divide_the_model_is_a_one_line_error(name, size, what):
    with pytest.raises(ConfigError, match=r"tensor_parallel \d+ does not divide") as error:
        EngineConfig(model_config(name), tensor_parallel=size)
    assert what in str(error.value) and "\n" not in str(error.value)


def test_the_seeds_tp_sizes_divide_the_full_models():
    EngineConfig(model_config("glm-4.5-air"), tensor_parallel=8)
    EngineConfig(model_config("ernie-4.5-21b-a3b"), tensor_parallel=4)
    with pytest.raises(ConfigError, match="tensor_parallel must be in"):
        EngineConfig(model_config("ernie-4.5-tiny"), tensor_parallel=0)


def test_every_parameter_has_a_sharding_rule():
    for name in ("glm-4.5-air", "ernie-4.5-21b-a3b"):
        config = model_config(name, num_layers=2)
        with torch.device("meta"):
            model = MoEDecoder(config, 4)
        for param_name, _ in model.named_parameters():
            shard_of(param_name, config)  # raises for a name no rule knows
