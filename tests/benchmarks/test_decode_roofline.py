"""benchmarks/decode_roofline.py's byte accounting, against the parameter count."""

import pytest

from reference_engine.config import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_all_experts_hit_reads_every_parameter_once(name, repo_script):
    """With every expert hit, a step reads each weight once — the parameter count, less the
    input embedding table when it is not also the LM head — plus the embedding rows it looks
    up (which a tied LM head reads again)."""
    bench, config = repo_script("benchmarks/decode_roofline.py"), PRESETS[name]
    slots = 4
    read = bench.weight_bytes(config, config.num_experts, slots)
    embedding = 0 if config.tie_embeddings else config.vocab_size * config.hidden_size
    looked_up = slots * config.hidden_size
    assert read == (config.num_parameters() - embedding + looked_up) * 2


def test_kv_bytes_of_one_slot_and_token(repo_script):
    bench, config = repo_script("benchmarks/decode_roofline.py"), PRESETS["ernie-4.5-21b-a3b"]
    assert bench.kv_bytes(config, 1, 1) == 28 * 2 * 4 * 128 * 2
    # the figure: 64 slots at context 2250 read 8.3 GB of KV
    assert bench.kv_bytes(config, 64, 2250) == pytest.approx(8.26e9, rel=0.01)
