"""The sampling kernel against the torch reference (`reference_engine.kernels.sampling`).

The small-vocabulary tests run the kernel on the GPU when there is one, else in Triton's
interpreter on CPU tensors (tests/conftest.py sets TRITON_INTERPRET); their small tiles make
every selection path run (refinement passes, counting off exact ties, the top-p tolerance
cut, the K->P hand-over, the Gumbel pass over the whole row). The `cuda` tests run the
engine's shapes.

Equivalence, as the kernel module documents it: margins and greedy tokens bit-identical;
a sampled row's kept set (a prefix of the stable sort, reported as its length) equals the
reference's except for tokens whose exclusive mass, as the reference computes it, lies
within TOP_P_TOLERANCE of top_p; the token equals the reference's when the kept sets agree
and otherwise is the Gumbel-max over the kernel's own prefix.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from reference_engine.kernels import KernelBackend, triton_usable
from reference_engine.kernels import sampling as kernel_module
from reference_engine.kernels.sampling import (
    TOP_P_TOLERANCE,
    SamplingConfig,
    sample_torch,
    sample_triton,
    triton_noise,
    triton_noise_from_bits,
)
from reference_engine.sampler import SamplingTensors, gumbel_noise, sample

KERNEL_DEVICE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or not triton_usable(KERNEL_DEVICE.type),
    reason="needs Triton (on CUDA, or its interpreter)",
)
VOCAB = 160  # the small tests' vocabulary (one compile per config on a GPU)

# Tiles small enough that tiny vocabularies take every path (C = 16 candidates).
SMALL = SamplingConfig(segment=64, block=64, thresholds=8, candidates=16, stages=1)


@pytest.fixture(autouse=True, scope="module")
def _fast_interpreter():
    """Triton 3.6's interpreter re-scans triton.language on every nested @jit call (~3 ms,
    most of a row's time here); the kernel launch has already patched it, so skip the
    rescans inside a launch. Test speed only: results are the same without it."""
    try:
        import triton.language as tl
        import triton.runtime.interpreter as interp

        patch_lang, run_grid = interp._patch_lang, interp.GridExecutor.__call__
        scope_type = interp._LangPatchScope
    except (ImportError, AttributeError):
        yield
        return
    launch: list[set] = []

    def patch_once(fn):
        modules = {id(v) for v in fn.__globals__.values() if v is tl or v is tl.core}
        if launch and modules <= launch[-1]:
            return scope_type()
        if launch:
            launch[-1] |= modules
        return patch_lang(fn)

    def run_patched(self, *args, **kwargs):
        launch.append(set())
        try:
            return run_grid(self, *args, **kwargs)
        finally:
            launch.pop()

    interp._patch_lang, interp.GridExecutor.__call__ = patch_once, run_patched
    yield
    interp._patch_lang, interp.GridExecutor.__call__ = patch_lang, run_grid


FIELDS = ("temperature", "top_k", "top_p", "seed", "position")


def make_params(rows, temperature, top_k, top_p, seed, position, device=KERNEL_DEVICE):
    """SamplingTensors from per-row lists (or one value for every row)."""

    def column(values, dtype):
        values = values if isinstance(values, list) else [values] * rows
        return torch.tensor(values, dtype=dtype, device=device)

    return SamplingTensors(
        temperature=column(temperature, torch.float32),
        top_k=column(top_k, torch.int64),
        top_p=column(top_p, torch.float32),
        seed=column(seed, torch.int64),
        position=column(position, torch.int64),
    )


def random_params(rows, vocab, generator, device=KERNEL_DEVICE, greedy_share=0.15):
    """A mix of greedy rows and every kind of sampled row."""

    def pick(options):
        return [options[i] for i in torch.randint(len(options), (rows,), generator=generator)]

    temperature = pick([0.25, 0.7, 1.0, 1.0, 1.9])
    temperature = [
        0.0 if u < greedy_share else t
        for u, t in zip(torch.rand(rows, generator=generator).tolist(), temperature, strict=True)
    ]
    top_k = pick([0, 0, 1, 3, 12, 40, vocab - 1, vocab + 5])
    top_p = pick([1.0, 1.0, 0.95, 0.9, 0.6, 0.2, 0.0])
    seed = torch.randint(-(2**62), 2**62, (rows,), generator=generator).tolist()
    position = torch.randint(0, 2**40, (rows,), generator=generator).tolist()
    return make_params(rows, temperature, top_k, top_p, seed, position, device)


def random_logits(kind, rows, vocab, generator, device=KERNEL_DEVICE):
    """Logits of a given character; bf16 and coarse ones carry many exact ties."""
    normal = torch.randn(rows, vocab, generator=generator)
    if kind == "normal":
        logits = normal * 2.0
    elif kind == "peaked":  # an LM-like head: a few tokens far above the rest
        logits = normal * 1.5
        hot = torch.randint(vocab, (rows, 6), generator=generator)
        logits.scatter_add_(1, hot, 6.0 + 4.0 * torch.rand(rows, 6, generator=generator))
    elif kind == "bf16":
        logits = (normal * 3.0).bfloat16().float()
    elif kind == "coarse":
        logits = torch.randint(-3, 4, (rows, vocab), generator=generator).float()
    elif kind == "equal":
        logits = torch.zeros(rows, vocab)
    else:
        raise ValueError(kind)
    return logits.to(device)


def reference_prefix(logits, params):
    """The reference's order and masses: scaled values and ids in stable-sort order, the
    exclusive masses, the top-k mask and the kept count, as `sample_torch` computes them."""
    vocab = logits.shape[-1]
    scaled = logits / params.temperature.clamp_min(kernel_module.MIN_TEMPERATURE)[:, None]
    sorted_scaled, sorted_ids = scaled.sort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(vocab, device=logits.device)
    k = torch.where(params.top_k > 0, params.top_k, vocab)
    in_top_k = ranks[None, :] < k[:, None]
    probs = sorted_scaled.masked_fill(~in_top_k, float("-inf")).softmax(dim=-1)
    exclusive = probs.cumsum(dim=-1) - probs
    kept = in_top_k & (exclusive < params.top_p[:, None])
    return sorted_scaled, sorted_ids, exclusive, in_top_k, kept.sum(-1)


def prefix_gumbel_max(sorted_scaled, sorted_ids, params, row, length):
    """The Gumbel-max over the first `length` tokens of row's stable order."""
    ids = sorted_ids[row : row + 1, :length]
    noise = gumbel_noise(params.seed[row : row + 1], params.position[row : row + 1], ids)
    perturbed = sorted_scaled[row : row + 1, :length] + noise
    return ids[0, perturbed[0].argmax()].item()


def run_triton(logits, params, config=SMALL):
    """Tokens, margins and kept counts of the kernel, outputs poisoned first."""
    rows = logits.shape[0]
    tokens = torch.full((rows,), -7, dtype=torch.int64, device=logits.device)
    margins = torch.full((rows,), float("nan"), device=logits.device)
    kept = torch.full((rows,), -1, dtype=torch.int32, device=logits.device)
    sample_triton(logits, params, out=(tokens, margins), kept=kept, config=config)
    return tokens, margins, kept


def check_against_reference(logits, params, config=SMALL) -> int:
    """Assert the documented equivalence row by row; return how many kept sets differ."""
    tokens, margins, kept = run_triton(logits, params, config)
    ref_tokens, ref_margins = sample_torch(logits, params)
    assert torch.equal(margins, ref_margins)
    sorted_scaled, sorted_ids, exclusive, in_top_k, ref_kept = reference_prefix(logits, params)
    differ = 0
    for row in range(logits.shape[0]):
        if params.temperature[row] <= 0:
            assert tokens[row] == ref_tokens[row] and kept[row] == 1, row
            continue
        ours, theirs = kept[row].item(), max(ref_kept[row].item(), 1)
        if ours == theirs:
            assert tokens[row] == ref_tokens[row], row
            continue
        differ += 1
        lo, hi = sorted((ours, theirs))
        assert in_top_k[row, lo:hi].all(), (row, ours, theirs)  # top-k is exact
        gap = (exclusive[row, lo:hi] - params.top_p[row]).abs().max().item()
        assert gap <= TOP_P_TOLERANCE, (row, ours, theirs, gap)
        expected = prefix_gumbel_max(sorted_scaled, sorted_ids, params, row, ours)
        assert tokens[row].item() == expected, row
    return differ


# -- noise -------------------------------------------------------------------------------
@needs_triton
def test_in_kernel_noise_matches_gumbel_noise():
    generator = torch.Generator().manual_seed(11)
    seed = torch.tensor([0, -1, 2**62 + 12345, -(2**63), 7, 2**32 + 5])
    position = torch.tensor([0, 3, 2**33 + 1, 9, 2**40, 17])
    ids = torch.randint(0, 151552, (6, 300), generator=generator)
    ids[:, :3] = torch.tensor([0, 1, 151551])
    seed, position, ids = seed.to(KERNEL_DEVICE), position.to(KERNEL_DEVICE), ids.to(KERNEL_DEVICE)
    ours, theirs = triton_noise(seed, position, ids), gumbel_noise(seed, position, ids)
    # numpy's float32 log (the interpreter's) and torch's CPU log differ in the last bit on
    # some inputs; on CUDA both are libdevice `logf` and the test below is bit-exact.
    torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=1e-6)


def torch_noise_from_bits(bits):
    """The bits -> noise half of `gumbel_noise`, on int64 holding uint32 values."""
    uniform = ((bits >> 9).float() + 0.5) * (1.0 / 2**23)
    return -torch.log(-torch.log(uniform))


@needs_triton
def test_noise_from_bits_keeps_the_edge_values():
    bits = torch.tensor([0, 255, 256, 2**31, 0xFFFFFEFF, 0xFFFFFF00, 0xFFFFFFFF, 0xFFFFFE00])
    bits = bits.to(KERNEL_DEVICE)
    ours, theirs = triton_noise_from_bits(bits), torch_noise_from_bits(bits)
    # the largest hash values stay below u = 1: finite noise everywhere
    assert torch.isfinite(ours).all() and torch.isfinite(theirs).all()
    torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=1e-6)


# -- greedy ------------------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("kind", ["normal", "bf16", "coarse", "equal"])
def test_greedy_rows_are_bit_exact(kind):
    generator = torch.Generator().manual_seed(hash(kind) % 2**31)
    logits = random_logits(kind, 8, VOCAB, generator)
    logits[0, 63] = logits[0, 64] = logits[0].max() + 1.0  # a tie across a segment boundary
    logits[1, VOCAB - 1] = logits[1].max() + 0.5  # max in the last, partial segment
    params = make_params(8, 0.0, 0, 1.0, 0, 0)
    tokens, margins, kept = run_triton(logits, params)
    top2 = logits.topk(2, dim=-1).values
    assert torch.equal(tokens, logits.argmax(dim=-1))
    assert torch.equal(margins, top2[:, 0] - top2[:, 1])
    assert (kept == 1).all()
    assert tokens[0] == 63 and margins[0] == 0.0


# -- sampled rows ------------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("kind", ["normal", "peaked", "bf16", "coarse"])
def test_sampled_rows_match_the_reference(kind):
    generator = torch.Generator().manual_seed(1000 + hash(kind) % 1000)
    logits = random_logits(kind, 12, VOCAB, generator)
    params = random_params(12, VOCAB, generator)
    check_against_reference(logits, params)


@needs_triton
def test_selection_paths_match_the_reference():
    """Rows built to take each path: refinement by count (k > C), the K->P hand-over, exact
    ties beyond the block, the cut inside a bracket lighter than EPS_CUT (a top_p just
    below 1 over a tail of ~1e-9 probabilities), keep-everything."""
    generator = torch.Generator().manual_seed(5)
    vocab = VOCAB
    normal = torch.randn(8, vocab, generator=generator)
    logits = torch.stack(
        [
            normal[0] * 2.0,  # top_k 60 > C: refine by count, then the block decides
            normal[1] * 0.5,  # top_k 100, top_p 0.05: the top-p cut lies above the k block
            torch.zeros(vocab),  # all ties: top-p counts them off by id
            torch.zeros(vocab),  # all ties, top_k 50
            torch.cat([torch.zeros(1), normal[4, 1:] * 0.5 - 20.0]),  # cut in a light tail
            normal[5] * 3.0,  # top_p 1, no top-k: keep everything
            normal[6] * 2.0,  # top_p 0.5 over a flat row: refinement by mass
            torch.cat([torch.full((40,), 1.0), torch.zeros(vocab - 40)]),  # k inside ties
        ]
    ).to(KERNEL_DEVICE)
    params = make_params(
        8,
        temperature=[1.0, 0.8, 1.0, 1.3, 1.0, 0.9, 1.0, 1.0],
        top_k=[60, 100, 0, 50, 0, 0, 0, 25],
        top_p=[1.0, 0.05, 0.37, 1.0, 0.99999994, 1.0, 0.5, 1.0],
        seed=[1, 2, 3, 4, 5, 6, 7, 8],
        position=[10, 20, 30, 40, 50, 60, 70, 80],
    )
    check_against_reference(logits, params)
    _, _, kept = run_triton(logits, params)
    assert kept[3] == 50 and kept[4] == 1 and kept[5] == vocab and kept[7] == 25


# -- invariants --------------------------------------------------------------------------
@needs_triton
def test_rows_are_independent_of_the_batch():
    generator = torch.Generator().manual_seed(9)
    logits = random_logits("bf16", 6, VOCAB, generator)
    params = random_params(6, VOCAB, generator, greedy_share=0.0)
    tokens, margins, kept = run_triton(logits, params)
    order = torch.tensor([3, 0, 5], device=KERNEL_DEVICE)
    noise = random_logits("normal", 3, VOCAB, generator)  # other rows: different logits
    mixed = torch.cat([logits[order], noise])
    mixed_params = SamplingTensors(
        *(torch.cat([getattr(params, f)[order], getattr(params, f)[:3]]) for f in FIELDS)
    )
    tokens2, margins2, kept2 = run_triton(mixed, mixed_params)
    assert torch.equal(tokens2[:3], tokens[order])
    assert torch.equal(margins2[:3], margins[order])
    assert torch.equal(kept2[:3], kept[order])


@needs_triton
def test_outputs_and_workspace_may_start_poisoned(monkeypatch):
    generator = torch.Generator().manual_seed(4)
    logits = random_logits("peaked", 4, VOCAB, generator)
    params = make_params(4, [0.0, 1.0, 0.7, 1.0], [0, 5, 0, 30], [1.0, 0.9, 0.8, 0.95], 3, 4)
    clean = run_triton(logits, params)

    def poisoned(words, device):
        return torch.randint(-(2**31), 2**31 - 1, (words,), dtype=torch.int32, device=device)

    monkeypatch.setattr(kernel_module, "_workspace", poisoned)
    again = run_triton(logits, params)  # run_triton poisons the outputs too
    for a, b in zip(clean, again, strict=True):
        assert torch.equal(a, b)


@needs_triton
def test_strided_parameters_as_the_engine_packs_them():
    """The engine's parameters are strided views of one packed int64 table."""
    generator = torch.Generator().manual_seed(8)
    logits = random_logits("normal", 5, VOCAB, generator)
    params = random_params(5, VOCAB, generator)
    packed = torch.zeros(5, 4, dtype=torch.int64, device=KERNEL_DEVICE)
    packed[:, 0], packed[:, 1], packed[:, 2] = params.position, params.seed, params.top_k
    floats = packed[:, 3:].view(torch.float32)  # (5, 2): temperature, top_p
    floats[:, 0], floats[:, 1] = params.temperature, params.top_p
    strided = SamplingTensors(floats[:, 0], packed[:, 2], floats[:, 1], packed[:, 1], packed[:, 0])
    for a, b in zip(run_triton(logits, params), run_triton(logits, strided), strict=True):
        assert torch.equal(a, b)


@needs_triton
def test_bitonic_block_sort_matches_the_rank_sort():
    """The interpreter sorts the block by counting ranks; CUDA uses `tl.sort`. Run the
    `tl.sort` path once here (slow in the interpreter) on rows that use the block."""
    generator = torch.Generator().manual_seed(2)
    logits = random_logits("bf16", 2, VOCAB, generator)
    params = make_params(2, 1.0, [6, 0], [1.0, 0.3], [5, 6], [7, 8])
    bitonic = dataclasses.replace(SMALL, rank_sort=False)
    for a, b in zip(run_triton(logits, params, bitonic), run_triton(logits, params), strict=True):
        assert torch.equal(a, b)


@needs_triton
def test_sample_dispatches_by_backend():
    generator = torch.Generator().manual_seed(6)
    logits = random_logits("normal", 3, VOCAB, generator)
    params = make_params(3, [0.0, 1.0, 0.5], [0, 20, 0], [1.0, 0.9, 0.8], 1, 2)
    torch_out = sample(logits, params, backend=KernelBackend.TORCH)
    triton_out = sample(logits, params, backend=KernelBackend.TRITON)
    for a, b in zip(torch_out, sample_torch(logits, params), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(triton_out, sample_triton(logits, params), strict=True):
        assert torch.equal(a, b)


# -- GPU ---------------------------------------------------------------------------------
CUDA = torch.device("cuda")
ENGINE_SHAPES = [(64, 103424), (16, 151552), (4, 151552)]


def cuda_logits(kind, rows, vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    return random_logits(kind, rows, vocab, generator, CUDA)


@pytest.mark.cuda
def test_cuda_noise_is_bit_exact():
    generator = torch.Generator().manual_seed(12)
    seed = torch.randint(-(2**62), 2**62, (64,), generator=generator).to(CUDA)
    position = torch.randint(0, 2**40, (64,), generator=generator).to(CUDA)
    ids = torch.arange(151552, device=CUDA).expand(64, -1).contiguous()
    assert torch.equal(triton_noise(seed, position, ids), gumbel_noise(seed, position, ids))
    bits = torch.arange(0, 2**32, 997, device=CUDA)
    assert torch.equal(triton_noise_from_bits(bits), torch_noise_from_bits(bits))


@pytest.mark.cuda
@pytest.mark.parametrize("rows,vocab", ENGINE_SHAPES)
@pytest.mark.parametrize("kind", ["normal", "bf16"])
def test_cuda_greedy_is_bit_exact(rows, vocab, kind):
    logits = cuda_logits(kind, rows, vocab, rows + vocab)
    params = make_params(rows, 0.0, 0, 1.0, 0, 0, CUDA)
    tokens, margins, _ = run_triton(logits, params, kernel_module.DEFAULT_CONFIG)
    top2 = logits.topk(2, dim=-1).values
    assert torch.equal(tokens, logits.argmax(dim=-1))
    assert torch.equal(margins, top2[:, 0] - top2[:, 1])


@pytest.mark.cuda
@pytest.mark.parametrize("rows,vocab", ENGINE_SHAPES)
@pytest.mark.parametrize("kind", ["normal", "peaked", "bf16"])
def test_cuda_sampled_rows_match_the_reference(rows, vocab, kind):
    generator = torch.Generator().manual_seed(rows * 7 + vocab)
    logits = random_logits(kind, rows, vocab, generator, CUDA)
    params = random_params(rows, vocab, generator, CUDA)
    check_against_reference(logits, params, kernel_module.DEFAULT_CONFIG)


def engine_like_call(rows, vocab, seed):
    """A batch as the benchmark runs it: LM-like logits, mixed sampling parameters."""
    generator = torch.Generator().manual_seed(seed)
    logits = random_logits("peaked", rows, vocab, generator, CUDA)
    params = random_params(rows, vocab, generator, CUDA)
    return logits, params


@pytest.mark.cuda
def test_cuda_graph_replay_equals_eager():
    logits, params = engine_like_call(64, 103424, 1)
    eager = run_triton(logits, params, kernel_module.DEFAULT_CONFIG)
    out = (torch.empty_like(eager[0]), torch.empty_like(eager[1]))
    kept = torch.empty_like(eager[2])
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        sample_triton(logits, params, out=out, kept=kept)  # warm up (compile) off-graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sample_triton(logits, params, out=out, kept=kept)
    for _ in range(2):
        out[0].fill_(-1)
        graph.replay()
        torch.cuda.synchronize()
        for a, b in zip(eager, (*out, kept), strict=True):
            assert torch.equal(a, b)


@pytest.mark.cuda
def test_cuda_no_host_sync_when_warm(host_syncs_raise):
    logits, params = engine_like_call(16, 151552, 2)
    sample_triton(logits, params)  # compile
    torch.cuda.synchronize()
    with host_syncs_raise():
        sample_triton(logits, params)
        sample(logits, params, backend=KernelBackend.TRITON)
    torch.cuda.synchronize()


@pytest.mark.cuda
def test_cuda_rows_are_batch_invariant():
    """A row's token, margin and kept count are bit-identical in any batch composition."""
    logits, params = engine_like_call(32, 103424, 3)
    alone = run_triton(logits, params, kernel_module.DEFAULT_CONFIG)
    generator = torch.Generator().manual_seed(4)
    for trial in range(4):
        rows = int(torch.randint(1, 64, (1,), generator=generator))
        picks = torch.randint(0, 32, (rows,), generator=generator)
        others, other_params = engine_like_call(rows, 103424, 100 + trial)
        take = torch.rand(rows, generator=generator) < 0.5  # the rest: unrelated rows
        batch = torch.where(take[:, None].to(CUDA), logits[picks.to(CUDA)], others)
        batch_params = SamplingTensors(
            *(
                torch.where(
                    take.to(CUDA), getattr(params, f)[picks.to(CUDA)], getattr(other_params, f)
                )
                for f in FIELDS
            )
        )
        result = run_triton(batch, batch_params, kernel_module.DEFAULT_CONFIG)
        idx = take.nonzero().squeeze(1).to(CUDA)
        for ours, ref in zip(result, alone, strict=True):
            assert torch.equal(ours[idx], ref[picks.to(CUDA)[idx]])
