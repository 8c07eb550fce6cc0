import torch

from reference_engine.sampler import SamplingTensors, gumbel_noise, sample


def params(n, temperature=1.0, top_k=0, top_p=1.0, seed=7, position=3):
    full = lambda v, dt: torch.full((n,), v, dtype=dt)  # noqa: E731
    return SamplingTensors(
        full(temperature, torch.float32),
        full(top_k, torch.int64),
        full(top_p, torch.float32),
        full(seed, torch.int64),
        full(position, torch.int64),
    )


def test_noise_is_a_pure_function_of_seed_position_and_token():
    ids = torch.arange(100).expand(2, 100)
    a = gumbel_noise(torch.tensor([1, 1]), torch.tensor([5, 5]), ids)
    assert torch.equal(a[0], a[1])
    b = gumbel_noise(torch.tensor([1, 2]), torch.tensor([6, 5]), ids)
    assert not torch.equal(a[0], b[0]) and not torch.equal(a[0], b[1])


def test_greedy_takes_argmax_and_reports_margin():
    logits = torch.tensor([[0.0, 3.0, 2.5, 1.0]])
    tokens, margin = sample(logits, params(1, temperature=0.0))
    assert tokens.tolist() == [1]
    assert margin.item() == 0.5


def test_sampling_is_row_independent_and_reproducible():
    torch.manual_seed(0)
    logits = torch.randn(6, 50)
    tokens, _ = sample(logits, params(6))
    for i in range(6):
        alone, _ = sample(logits[i : i + 1], params(1))
        assert alone.item() == tokens[i].item()


def test_top_k_one_is_greedy_and_top_p_keeps_the_nucleus():
    torch.manual_seed(1)
    logits = torch.randn(32, 64)
    greedy = logits.argmax(-1)
    for seed in range(5):
        tokens, _ = sample(logits, params(32, top_k=1, seed=seed))
        assert torch.equal(tokens, greedy)
    # A dominant token holding > 90% of the mass is the whole 0.9-nucleus.
    peaked = torch.zeros(8, 64)
    peaked[:, 11] = 10.0
    for seed in range(5):
        tokens, _ = sample(peaked, params(8, top_p=0.9, seed=seed))
        assert tokens.tolist() == [11] * 8


def test_temperature_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1])).expand(4000, 3).contiguous()
    p = params(4000)
    p.position = torch.arange(4000)
    tokens, _ = sample(logits, p)
    freq = torch.bincount(tokens, minlength=3).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)
