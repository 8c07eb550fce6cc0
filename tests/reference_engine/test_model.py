import pytest
import torch

from reference_engine import PRESETS, model_config
from reference_engine.config import ERNIE_45_21B_A3B, GLM_45_AIR, ConfigError
from reference_engine.kv_cache import KVCache
from reference_engine.model import MoEDecoder

CPU = torch.device("cpu")


def build(name, max_len=64, slots=4):
    config = model_config(name)
    model = MoEDecoder.build(config, max_len, CPU, torch.float32, seed=0)
    return config, model, KVCache(config, slots, max_len, CPU, torch.float32)


def test_real_presets_have_the_real_parameter_counts():
    assert abs(ERNIE_45_21B_A3B.num_parameters() / 1e9 - 21.83) < 0.05
    assert abs(GLM_45_AIR.num_parameters() / 1e9 - 106.85) < 0.1
    assert GLM_45_AIR.rotary_dim == 64 and ERNIE_45_21B_A3B.rotary_dim == 128


@pytest.mark.parametrize("name", ["glm-4.5-air-tiny", "ernie-4.5-tiny"])
def test_tiny_model_builds_with_the_counted_parameters(name):
    config, model, _ = build(name)
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()


@pytest.mark.parametrize("name", ["glm-4.5-air-tiny", "ernie-4.5-tiny"])
def test_decode_after_prefill_matches_a_longer_prefill(name):
    _, model, cache = build(name)
    prompt = torch.tensor([5, 9, 13, 17, 21])
    model.prefill(prompt[:3], 1, 0, cache)
    positions = torch.tensor([63, 3, 63, 63])  # idle slots write the scratch row
    logits = model.decode(torch.tensor([0, 17, 0, 0]), positions, cache)
    reference = model.prefill(prompt[:4], 2, 0, cache)
    torch.testing.assert_close(logits[1], reference[0], rtol=1e-4, atol=1e-4)


def test_decode_rows_do_not_depend_on_the_rest_of_the_batch():
    _, model, cache = build("glm-4.5-air-tiny")
    for slot in range(4):
        model.prefill(torch.tensor([7 + slot, 8, 9]), slot, 0, cache)
    positions = torch.tensor([3, 3, 3, 3])
    first = model.decode(torch.tensor([1, 2, 3, 4]), positions, cache)
    for slot in range(4):
        model.prefill(torch.tensor([7 + slot, 8, 9]), slot, 0, cache)
    second = model.decode(torch.tensor([1, 99, 3, 42]), positions, cache)
    assert torch.equal(first[0], second[0]) and torch.equal(first[2], second[2])


def test_overrides_and_bad_presets():
    small = model_config("ernie-4.5-21b-a3b", num_layers=4)
    assert small.num_layers == 4 and small.hidden_size == 2560
    with pytest.raises(ConfigError, match="unknown model preset"):
        model_config("llama")
    with pytest.raises(ConfigError, match="unknown model override"):
        model_config("ernie-4.5-tiny", layers=2)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        model_config("ernie-4.5-tiny", num_heads=5)
    assert set(PRESETS) >= {"glm-4.5-air", "ernie-4.5-21b-a3b"}
