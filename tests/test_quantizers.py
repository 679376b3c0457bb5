"""The quantizer family of stage 1: the shared contract for every registered quantizer, then the maths of each
one against hand computations on tiny inputs (losses, EMA step, k-means init, restarts, rotation trick,
temperature schedules, entropies, fp32 distances under bf16 autocast)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from stage1_tokenizer.quantizers import QUANTIZERS, build_quantizer, make_quantizer_config
from stage1_tokenizer.quantizers.distances import grouped_nearest_code
from stage1_tokenizer.quantizers.gumbel import gumbel_noise, gumbel_softmax
from stage1_tokenizer.quantizers.lfq import lfq_entropies
from stage1_tokenizer.quantizers.schedules import annealed

REPO = Path(__file__).resolve().parents[1]
DIM = 4  # embedding dimension of the contract tests: z is [B=2, D=4, H=3, W=3]

# name -> (registry name, options, codebook_sizes). Every registered quantizer appears, several with their options.
VARIANTS = {
    "vq": ("vq", {"codebook_size": 16}, [16]),
    "vq-cosine": ("vq", {"codebook_size": 16, "cosine": True}, [16]),
    "vq-lowdim": ("vq", {"codebook_size": 16, "codebook_dim": 2}, [16]),
    "vq-rotation": ("vq", {"codebook_size": 16, "rotation_trick": True}, [16]),
    "vq-upkeep": ("vq", {"codebook_size": 16, "kmeans_init": True, "restart": True, "usage_decay": 0.5}, [16]),
    "vq-ema": ("vq", {"codebook_size": 16, "ema": True}, [16]),
    "ema": ("ema", {"codebook_size": 16}, [16]),
    "ema-upkeep": ("ema", {"codebook_size": 16, "kmeans_init": True, "restart": True, "cosine": True}, [16]),
    "gumbel": ("gumbel", {"codebook_size": 16}, [16]),
    "gumbel-hard": ("gumbel", {"codebook_size": 16, "hard": True}, [16]),
    "fsq": ("fsq", {"levels": [3, 4, 2, 2]}, [48]),
    "fsq-projected": ("fsq", {"levels": [5, 4]}, [20]),
    "lfq": ("lfq", {"bits": 4}, [16]),
    "lfq-projected": ("lfq", {"bits": 3}, [8]),
    "rvq": ("rvq", {"codebook_size": 8, "depth": 3}, [8, 8, 8]),
    "rvq-ema-dropout": ("rvq", {"codebook_size": 8, "depth": 3, "ema": True, "quantizer_dropout": 0.5,
                                "kmeans_init": True}, [8, 8, 8]),
    "pq": ("pq", {"codebook_size": 8, "groups": 2}, [8, 8]),
    "pq-ema-upkeep": ("pq", {"codebook_size": 8, "groups": 4, "ema": True, "kmeans_init": True, "restart": True},
                      [8, 8, 8, 8]),
    "sq": ("sq", {"codebook_size": 16}, [16]),
    "soft": ("soft", {"codebook_size": 16}, [16]),
}


def make(variant: str, dim: int = DIM):
    name, options, _ = VARIANTS[variant]
    return build_quantizer(name, dim, options)


def sample_z(seed: int = 0, shape=(2, DIM, 3, 3)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def grid_z(points) -> torch.Tensor:
    """Positions ``[[x, y, ...], ...]`` -> ``z [1, D, 1, N]``."""
    return torch.tensor(points, dtype=torch.float32).t().reshape(1, len(points[0]), 1, len(points))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    # torch.testing.assert_close would do, but its first call imports torch.distributed.tensor (seconds of CPU).
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    worst = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual.double(), expected.double(), atol=atol, rtol=rtol), f"max abs difference {worst}"


def set_codes(quantizer, codes: torch.Tensor) -> None:
    """Give a vq/ema/pq codebook these vectors (an EMA codebook also gets matching statistics: count 1, sum = code)."""
    book = quantizer.codebook
    with torch.no_grad():
        book.weight.copy_(codes)
        if book.learned_by_ema:
            book.ema_sum.copy_(codes)
            book.ema_count.fill_(1.0)


def test_every_registered_quantizer_has_contract_variants():
    assert {name for name, _, _ in VARIANTS.values()} == set(QUANTIZERS)


# --- the contract, for every quantizer -------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes_codes_and_loss(variant):
    torch.manual_seed(0)
    quantizer = make(variant).train()
    z = sample_z()
    out = quantizer(z)
    sizes = VARIANTS[variant][2]
    assert quantizer.codebook_sizes == sizes
    assert out.z_q.shape == z.shape and out.z_q.dtype == z.dtype
    assert out.codes.shape == (2, 3, 3, len(sizes)) and out.codes.dtype == torch.long
    for channel, size in enumerate(sizes):
        assert 0 <= out.codes[..., channel].min() and out.codes[..., channel].max() < size
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    for key, value in out.stats.items():
        assert value.dim() == 0 and not value.requires_grad, key


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_reaches_the_input(variant):
    torch.manual_seed(0)
    quantizer = make(variant).train()
    z = sample_z().requires_grad_(True)
    out = quantizer(z)
    (out.z_q * torch.randn_like(out.z_q)).sum().backward()  # the decoder's gradient alone, without the loss
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_codes_round_trip_in_eval(variant):
    torch.manual_seed(0)
    quantizer = make(variant).train()
    for seed in range(2):  # training steps first, so k-means init, EMA and restarts have moved the codes
        quantizer(sample_z(seed))
    quantizer.eval()
    out = quantizer(sample_z(5))
    assert_close(quantizer.decode_codes(out.codes), out.z_q, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        again = quantizer(sample_z(5))
    assert torch.equal(again.codes, out.codes)  # eval is deterministic


@pytest.mark.parametrize("variant", VARIANTS)
def test_usage_counts_every_training_batch_and_no_eval_batch(variant):
    torch.manual_seed(0)
    quantizer = make(variant).train()
    for seed in range(3):
        quantizer(sample_z(seed))
    quantizer.eval()
    quantizer(sample_z(9))
    channels = len(quantizer.codebook_sizes)
    assert quantizer.usage_counts.sum().item() == 3 * 18 * channels  # 3 batches of 2 x 3 x 3 positions
    stats = quantizer.epoch_stats()
    assert 1.0 <= stats["perplexity"] and 0 < stats["usage"] <= 1.0
    assert quantizer.epoch_stats() == {}  # reset after reading


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_keeps_codes_of_fp32(variant):
    torch.manual_seed(0)
    quantizer = make(variant).eval()
    z = sample_z(3).bfloat16()  # what an encoder under bf16 autocast hands over
    reference = quantizer(z.float()).codes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(z)
    assert torch.equal(out.codes, reference)
    assert out.z_q.dtype == torch.bfloat16


def test_fp32_distances_under_autocast_pick_codes_that_bf16_would_miss():
    vq = build_quantizer("vq", 4, {"codebook_size": 8})
    codebook = 4.0 + 0.05 * torch.arange(8.0)[:, None].expand(8, 4)  # 4.00, 4.05, ... in every channel
    with torch.no_grad():
        vq.codebook.weight.copy_(codebook)
    z = torch.full((1, 4, 1, 1), 4.12)  # nearest: code 2 (4.10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        naive_scores = 0.5 * codebook.pow(2).sum(1) - z.view(1, 4) @ codebook.t()  # the matmul runs in bf16
        assert naive_scores.argmin().item() != 2  # bf16 picks a wrong code, so this case is a real test
        assert vq.eval()(z).codes.item() == 2


# --- vq and ema ------------------------------------------------------------------------------------------------
CODES_2D = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]
POINTS_2D = [[1.5, 0.2], [0.3, -0.1], [0.4, 1.2]]  # nearest codes 1, 0, 2


def test_vq_loss_and_its_gradients_by_hand():
    vq = build_quantizer("vq", 2, {"codebook_size": 3, "beta": 0.4})
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor(CODES_2D))
    z = grid_z(POINTS_2D).requires_grad_(True)
    out = vq(z)
    assert out.codes.flatten().tolist() == [1, 0, 2]
    mse = ((0.5**2 + 0.2**2) + (0.3**2 + 0.1**2) + (0.4**2 + 0.8**2)) / 6
    assert out.stats["codebook_loss"].item() == pytest.approx(mse, rel=1e-5)
    assert out.stats["commitment_loss"].item() == pytest.approx(mse, rel=1e-5)
    assert out.loss.item() == pytest.approx(1.4 * mse, rel=1e-5)  # codebook + beta * commitment
    out.loss.backward()
    chosen = grid_z([CODES_2D[1], CODES_2D[0], CODES_2D[2]])
    # beta sits on the encoder term: d/dz = beta * 2 (z - e) / numel; the codes get 2 (e - z) / numel.
    assert_close(z.grad, 0.4 * 2 * (z.detach() - chosen) / 6)
    expected_code_grad = 2 * (chosen - z.detach()) / 6
    assert_close(vq.codebook.weight.grad[1], expected_code_grad[0, :, 0, 0])


def test_ema_loss_is_commitment_only_and_codes_get_no_gradient():
    ema = build_quantizer("ema", 2, {"codebook_size": 3, "beta": 0.4}).eval()
    set_codes(ema, torch.tensor(CODES_2D))
    z = grid_z(POINTS_2D).requires_grad_(True)
    out = ema(z)
    mse = ((0.5**2 + 0.2**2) + (0.3**2 + 0.1**2) + (0.4**2 + 0.8**2)) / 6
    assert out.loss.item() == pytest.approx(0.4 * mse, rel=1e-5)
    assert not ema.codebook.weight.requires_grad
    assert not any(p.requires_grad for p in ema.codebook.parameters())


def test_ema_update_matches_a_hand_computed_step():
    ema = build_quantizer("ema", 2, {"codebook_size": 2, "decay": 0.5, "eps": 0.1}).train()
    set_codes(ema, torch.tensor([[0.0, 0.0], [4.0, 4.0]]))  # count 1, sum = code: the state of a fresh codebook
    out = ema(grid_z([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]]))
    assert out.codes.flatten().tolist() == [0, 0, 1]
    assert out.z_q[0, :, 0, 2].tolist() == [4.0, 4.0]  # this step quantizes with the codes before the update
    # counts n = (2, 1), sums = ((1, 1), (3, 4)); N = 0.5 * 1 + 0.5 * n; m = 0.5 * e + 0.5 * sums
    counts = [0.5 + 0.5 * 2, 0.5 + 0.5 * 1]
    sums = [[0.5, 0.5], [0.5 * 4 + 0.5 * 3, 0.5 * 4 + 0.5 * 4]]
    total = sum(counts)
    smoothed = [(n + 0.1) / (total + 2 * 0.1) * total for n in counts]  # Laplace smoothing
    expected = torch.tensor([[s / smoothed[k] for s in sums[k]] for k in range(2)])
    assert_close(ema.codebook.weight, expected)
    assert_close(ema.codebook.ema_count, torch.tensor(counts))


def clustered_batch(centres: torch.Tensor, per_cluster: int, noise: float, seed: int) -> torch.Tensor:
    """``z [1, d, 1, N]`` with ``per_cluster`` noisy points around each centre, shuffled."""
    g = torch.Generator().manual_seed(seed)
    points = centres.repeat_interleave(per_cluster, 0)
    points = points + noise * torch.randn(points.shape, generator=g)
    points = points[torch.randperm(len(points), generator=g)]
    return points.t().reshape(1, centres.shape[1], 1, -1)


CENTRES = torch.tensor([[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]])


@pytest.mark.parametrize("name", ["vq", "ema"])
def test_kmeans_init_puts_codes_on_the_data_clusters(name):
    torch.manual_seed(0)
    quantizer = build_quantizer(name, 2, {"codebook_size": 16, "kmeans_init": True, "kmeans_iters": 10}).train()
    before = quantizer.codebook.weight.detach().clone()
    assert torch.cdist(CENTRES, before).min(1).values.min() > 1.0  # the random init is nowhere near the data
    quantizer(clustered_batch(CENTRES, 40, 0.05, seed=1))
    codes = quantizer.codebook.weight.detach()
    distances = torch.cdist(CENTRES, codes)
    assert distances.min(1).values.max() < 0.1  # every cluster has a code on it
    assert distances.min(0).values.max() < 0.3  # and every code sits on a cluster (they are 6 apart)
    assert bool(quantizer.codebook.initialized)
    quantizer(clustered_batch(CENTRES + 1.0, 40, 0.05, seed=2))  # a second batch does not re-initialise
    assert torch.cdist(CENTRES, quantizer.codebook.weight.detach()).min(1).values.max() < 0.6


def test_kmeans_init_is_per_group_for_product_quantizers():
    torch.manual_seed(0)
    pq = build_quantizer("pq", 4, {"codebook_size": 16, "groups": 2, "kmeans_init": True})
    centres = torch.cat([CENTRES, 10 * CENTRES], dim=1)  # the second half lives on a different scale
    pq.train()(clustered_batch(centres, 30, 0.05, seed=3))
    groups = pq.codebook.weight.detach().view(2, 16, 2)
    assert torch.cdist(CENTRES, groups[0]).min(0).values.max() < 0.3
    assert torch.cdist(10 * CENTRES, groups[1]).min(0).values.max() < 0.3


@pytest.mark.parametrize("name", ["vq", "ema", "pq"])
def test_dead_code_restart_moves_unused_codes_onto_encoder_outputs(name):
    torch.manual_seed(0)
    options = {"codebook_size": 8, "restart": True, "dead_code_threshold": 1.0, "usage_decay": 0.5}
    quantizer = build_quantizer(name, 2, {**options, **({"groups": 1} if name == "pq" else {})}).train()
    live = CENTRES
    set_codes(quantizer, torch.cat([live, torch.full((4, 2), 50.0)]))  # codes 4..7 far from the data
    z = clustered_batch(CENTRES, 4, 0.01, seed=4)
    inputs = z.view(2, -1).t()
    # Step 1 starts every code at the uniform share (16 / 8 = 2); unused codes then decay 2 -> 1 -> 0.5 and
    # fall below the threshold before step 3's lookup.
    restarted = [quantizer(z).stats["restarted_codes"].item() for _ in range(3)]
    assert restarted == [0.0, 0.0, 4.0]
    codes = quantizer.codebook.weight.detach()
    assert_close(codes[:4], live, atol=0.05, rtol=0)  # live codes stay (EMA moves them a little)
    # Each dead code is now an encoder output (for EMA, moved a little by the update after this step's lookup).
    assert torch.cdist(codes[4:], inputs).min(1).values.max() < (0.05 if name == "ema" else 1e-5)


def test_epoch_statistics_see_every_batch():
    vq = build_quantizer("vq", 2, {"codebook_size": 8})
    codes = torch.tensor([[float(k), 0.0] for k in range(8)])
    with torch.no_grad():
        vq.codebook.weight.copy_(codes)
    vq.train()
    vq(grid_z([[0.1, 0], [0.0, 0], [0.2, 0], [1.1, 0]]))  # codes 0, 0, 0, 1
    vq(grid_z([[2.0, 0], [3.1, 0]]))  # codes 2, 3
    vq.eval()(grid_z([[7.0, 0]]))  # eval batches are not training statistics
    stats = vq.epoch_stats()
    counts = torch.tensor([3.0, 1, 1, 1])
    probs = counts / counts.sum()
    assert stats["usage"] == 0.5 and stats["dead_codes"] == 4
    assert stats["perplexity"] == pytest.approx(math.exp(-(probs * probs.log()).sum().item()))
    assert vq.epoch_stats() == {}


def test_rotation_trick_keeps_forward_values_and_rotates_the_gradient():
    torch.manual_seed(0)
    plain = build_quantizer("vq", 3, {"codebook_size": 6})
    rotating = build_quantizer("vq", 3, {"codebook_size": 6, "rotation_trick": True})
    with torch.no_grad():
        codes = torch.randn(6, 3)
        plain.codebook.weight.copy_(codes)
        rotating.codebook.weight.copy_(codes)
    z = sample_z(7, shape=(1, 3, 2, 2))
    upstream = torch.randn(1, 3, 2, 2)
    grads, outs = [], []
    for quantizer in (plain, rotating):
        zz = z.clone().requires_grad_(True)
        out = quantizer(zz)
        (out.z_q * upstream).sum().backward()
        grads.append(zz.grad)
        outs.append(out)
    assert_close(outs[1].z_q, outs[0].z_q)
    assert torch.equal(outs[1].codes, outs[0].codes)
    assert_close(grads[0], upstream)  # straight-through: identity
    # Rotation trick, by hand with explicit matrices: gradient = (|q| / |e|) R^T g, R = I - 2 r r^T + 2 v u^T.
    e_all = z.permute(0, 2, 3, 1).reshape(-1, 3)
    q_all = codes[outs[0].codes.flatten()]
    g_all = upstream.permute(0, 2, 3, 1).reshape(-1, 3)
    expected = []
    for e, q, g in zip(e_all, q_all, g_all):
        u, v = e / e.norm(), q / q.norm()
        r = (u + v) / (u + v).norm()
        rotation = torch.eye(3) - 2 * torch.outer(r, r) + 2 * torch.outer(v, u)
        assert_close(rotation @ u, v)  # it maps the direction of e onto that of q
        assert_close(rotation.t() @ rotation, torch.eye(3), atol=1e-5, rtol=0)  # orthogonal
        expected.append(q.norm() / e.norm() * rotation.t() @ g)
    expected = torch.stack(expected).view(1, 2, 2, 3).permute(0, 3, 1, 2)
    assert_close(grads[1], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(grads[1], grads[0])


def test_cosine_codes_are_unit_vectors_and_lowdim_projects_back():
    torch.manual_seed(0)
    cosine = build_quantizer("vq", 4, {"codebook_size": 8, "cosine": True}).eval()
    out = cosine(sample_z(1) * 10)
    assert torch.allclose(out.z_q.norm(dim=1), torch.ones(2, 3, 3), atol=1e-5)
    lowdim = build_quantizer("vq", 4, {"codebook_size": 8, "codebook_dim": 2})
    assert tuple(lowdim.codebook.weight.shape) == (8, 2)
    z = sample_z(2).requires_grad_(True)
    out = lowdim.train()(z)
    out.loss.backward()
    assert lowdim.project_in.weight.grad.abs().sum() > 0  # the commitment term trains the in-projection


# --- rvq and pq --------------------------------------------------------------------------------------------------
def test_rvq_levels_quantize_the_residuals():
    torch.manual_seed(0)
    rvq = build_quantizer("rvq", 2, {"codebook_size": 4, "depth": 2}).eval()
    with torch.no_grad():
        rvq.levels[0].weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
        rvq.levels[1].weight.copy_(torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3], [-0.3, -0.3]]))
    out = rvq(grid_z([[2.3, 0.1], [0.1, 1.5], [1.9, 2.0]]))
    assert out.codes[0, 0].tolist() == [[1, 1], [2, 3], [3, 0]]
    expected = grid_z([[2.3, 0.0], [-0.3, 1.7], [2.0, 2.0]])  # level 1 + level 2 codes
    assert_close(out.z_q, expected)


def test_rvq_loss_and_its_gradients_by_hand():
    """Each level adds codebook + beta * commitment on its own residual; the encoder gets beta of every level's
    pull and each level's codes get their own codebook term (the residual holds earlier codes constant)."""
    rvq = build_quantizer("rvq", 2, {"codebook_size": 4, "depth": 2, "beta": 0.4}).train()
    with torch.no_grad():
        rvq.levels[0].weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
        rvq.levels[1].weight.copy_(torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3], [-0.3, -0.3]]))
    points = torch.tensor([[2.3, 0.1], [0.1, 1.5], [1.9, 2.0]])
    z = grid_z(points.tolist()).requires_grad_(True)
    out = rvq(z)
    first = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])  # codes 1, 2, 3
    second = torch.tensor([[0.3, 0.0], [-0.3, -0.3], [0.0, 0.0]])  # codes 1, 3, 0 of the residuals
    residuals = [points, points - first]
    mse = [((r - e) ** 2).mean() for r, e in zip(residuals, (first, second))]
    assert out.loss.item() == pytest.approx(1.4 * (mse[0] + mse[1]).item(), rel=1e-5)

    out.loss.backward()
    encoder_grad = sum(0.4 * 2 * (r - e) / 6 for r, e in zip(residuals, (first, second)))
    assert_close(z.grad, grid_z(encoder_grad.tolist()))
    # level 2, code 3 is chosen by the second point only: 2 (e - r) / numel
    assert_close(rvq.levels[1].weight.grad[3], 2 * (second[1] - residuals[1][1]) / 6)
    assert_close(rvq.levels[0].weight.grad[0], torch.zeros(2))  # an unchosen code gets nothing


def test_rvq_quantizer_dropout_decodes_each_image_from_a_prefix_of_levels():
    torch.manual_seed(0)
    rvq = build_quantizer("rvq", 2, {"codebook_size": 4, "depth": 3, "quantizer_dropout": 1.0}).train()
    z = sample_z(1, shape=(16, 2, 2, 2))
    out = rvq(z)
    depths = []
    for image in range(16):
        prefixes = [
            sum(level.embed(out.codes[image].reshape(1, -1, 3)[:, :, i])[0] for i, level in enumerate(rvq.levels[:n]))
            for n in (1, 2, 3)
        ]
        z_q = out.z_q[image].permute(1, 2, 0).reshape(-1, 2)
        matches = [n + 1 for n, prefix in enumerate(prefixes) if torch.allclose(z_q, prefix, atol=1e-6)]
        assert matches, f"image {image} is not decoded from a prefix of its codes"
        depths.append(matches[0])
    assert min(depths) < 3  # some images were truncated


def test_pq_codes_are_the_nearest_code_of_each_group():
    torch.manual_seed(0)
    pq = build_quantizer("pq", 6, {"codebook_size": 5, "groups": 3}).eval()
    with torch.no_grad():
        pq.codebook.weight.copy_(torch.randn(15, 2))
    z = sample_z(4, shape=(2, 6, 2, 3))
    out = pq(z)
    x = z.permute(0, 2, 3, 1).reshape(-1, 3, 2)
    books = pq.codebook.weight.detach().view(3, 5, 2)
    for group in range(3):
        brute = torch.cdist(x[:, group], books[group]).argmin(1)
        assert torch.equal(out.codes.reshape(-1, 3)[:, group], brute)


def test_grouped_search_in_chunks_equals_brute_force():
    torch.manual_seed(0)
    x, books = torch.randn(3, 200, 5), torch.randn(3, 40, 5)
    full = grouped_nearest_code(x, books)
    chunked = grouped_nearest_code(x, books, max_elements=3 * 40 * 7)
    brute = torch.stack([torch.cdist(x[g], books[g]).argmin(1) for g in range(3)])
    assert torch.equal(full, brute) and torch.equal(chunked, brute)


# --- gumbel, sq, soft ----------------------------------------------------------------------------------------------
def test_gumbel_temperature_schedule_endpoints():
    gumbel = build_quantizer("gumbel", 2, {"codebook_size": 4, "tau_start": 1.0, "tau_end": 0.1, "anneal_steps": 4})
    assert gumbel.temperature() == pytest.approx(1.0)
    z = sample_z(0, shape=(1, 2, 2, 2))
    taus = [gumbel.train()(z).stats["temperature"].item() for _ in range(6)]
    assert taus[0] == pytest.approx(1.0) and taus[2] == pytest.approx(0.1**0.5)  # geometric halfway
    assert taus[4] == pytest.approx(0.1) and taus[5] == pytest.approx(0.1)  # held at the end
    for kind in ("exp", "linear", "cosine"):
        assert annealed(2.0, 0.5, 0, 10, kind) == pytest.approx(2.0)
        assert annealed(2.0, 0.5, 10, 10, kind) == pytest.approx(0.5)
        assert annealed(2.0, 0.5, 99, 10, kind) == pytest.approx(0.5)
    assert annealed(2.0, 0.5, 5, 10, "linear") == pytest.approx(1.25)


def test_gumbel_kl_to_uniform_and_eval_codes_by_hand():
    torch.manual_seed(0)
    gumbel = build_quantizer("gumbel", 3, {"codebook_size": 5, "kl_weight": 0.5}).eval()
    z = sample_z(2, shape=(1, 3, 2, 2))
    out = gumbel(z)
    x = z.permute(0, 2, 3, 1).reshape(-1, 3)
    q = F.softmax(gumbel.to_logits(x), dim=-1)
    kl = (q * (q * 5).log()).sum(-1).mean()  # KL(q || 1/K)
    assert out.loss.item() == pytest.approx(0.5 * kl.item(), rel=1e-5)
    assert torch.equal(out.codes.flatten(), q.argmax(-1))


def test_gumbel_noise_moments_and_the_gumbel_max_trick():
    torch.manual_seed(0)
    noise = gumbel_noise(torch.empty(1_000_000))
    assert noise.mean().item() == pytest.approx(0.5772, abs=0.005)  # Euler-Mascheroni
    assert noise.var().item() == pytest.approx(math.pi**2 / 6, abs=0.01)
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0])
    draws = (logits + gumbel_noise(torch.empty(200_000, 4))).argmax(-1)
    assert_close(torch.bincount(draws, minlength=4) / 200_000, F.softmax(logits, -1), atol=0.005, rtol=0)


def test_gumbel_softmax_hard_is_one_hot_with_the_relaxed_gradient():
    logits = torch.randn(6, 5, requires_grad=True)
    weights = torch.randn(6, 5)
    torch.manual_seed(1)
    hard = gumbel_softmax(logits, 0.5, hard=True)
    (hard * weights).sum().backward()
    hard_grad = logits.grad.clone()
    logits.grad = None
    torch.manual_seed(1)
    soft = gumbel_softmax(logits, 0.5, hard=False)
    (soft * weights).sum().backward()
    assert torch.equal(hard.detach(), F.one_hot(soft.argmax(-1), 5).float())
    assert_close(logits.grad, hard_grad)


def test_gumbel_hard_forward_is_one_code():
    torch.manual_seed(0)
    gumbel = build_quantizer("gumbel", 3, {"codebook_size": 5, "hard": True}).train()
    out = gumbel(sample_z(2, shape=(1, 3, 2, 2)))
    assert_close(out.z_q, gumbel.decode_codes(out.codes))


def test_sq_loss_by_hand_and_variance_is_learned():
    sq = build_quantizer("sq", 2, {"codebook_size": 3, "init_variance": 0.5, "loss_weight": 2.0}).eval()
    with torch.no_grad():
        sq.codebook.weight.copy_(torch.tensor(CODES_2D))
    z = grid_z(POINTS_2D)
    out = sq(z)
    assert out.codes.flatten().tolist() == [1, 0, 2]
    x, codes = torch.tensor(POINTS_2D), torch.tensor(CODES_2D)
    variance = 1.0 + 0.5  # the authors' 1 + exp(param), param starting at log(init_variance)
    logits = -torch.cdist(x, codes).pow(2) / (2 * variance)
    p = F.softmax(logits, -1)
    continuous = ((x - codes[[1, 0, 2]]) ** 2).sum(-1).mean() / (2 * variance)
    discrete = (p * p.log()).sum(-1).mean()
    assert out.loss.item() == pytest.approx(2.0 * (continuous + discrete).item(), rel=1e-5)
    sq.train()
    z = z.clone().requires_grad_(True)
    out = sq(z)
    (out.loss + out.z_q.sum()).backward()
    assert sq.log_param.grad is not None and sq.log_param.grad != 0
    assert sq.codebook.weight.grad.abs().sum() > 0 and z.grad.abs().sum() > 0


def test_pq_loss_and_its_gradients_by_hand():
    """Groups are quantized apart; the loss is codebook + beta * commitment over all groups' coordinates."""
    torch.manual_seed(0)
    pq = build_quantizer("pq", 6, {"codebook_size": 5, "groups": 3, "beta": 0.4}).train()
    with torch.no_grad():
        pq.codebook.weight.copy_(torch.randn(15, 2))
    z = sample_z(4, shape=(2, 6, 2, 3)).requires_grad_(True)
    out = pq(z)
    codebooks = pq.codebook.weight.detach().view(3, 5, 2)
    x = z.detach().permute(0, 2, 3, 1).reshape(-1, 3, 2)  # [N, group, 2]
    chosen = torch.stack([codebooks[g][torch.cdist(x[:, g], codebooks[g]).argmin(-1)] for g in range(3)], dim=1)
    mse = ((x - chosen) ** 2).mean()
    assert out.loss.item() == pytest.approx(1.4 * mse.item(), rel=1e-5)

    out.loss.backward()
    numel = x.numel()
    expected = (0.4 * 2 * (x - chosen) / numel).reshape(2, 2, 3, 6).permute(0, 3, 1, 2)
    assert_close(z.grad, expected)
    assert pq.codebook.weight.grad.abs().sum() > 0


def test_soft_loss_uses_the_nearest_code_with_beta_on_the_encoder_term():
    soft = build_quantizer("soft", 2, {"codebook_size": 3, "temperature": 0.5, "kmeans_init": False, "beta": 0.4}).train()
    with torch.no_grad():
        soft.codebook.weight.copy_(torch.tensor(CODES_2D))
    z = grid_z(POINTS_2D).requires_grad_(True)
    out = soft(z)
    mse = ((0.5**2 + 0.2**2) + (0.3**2 + 0.1**2) + (0.4**2 + 0.8**2)) / 6  # nearest codes 1, 0, 2
    assert out.loss.item() == pytest.approx(1.4 * mse, rel=1e-5)
    out.loss.backward()
    chosen = grid_z([CODES_2D[1], CODES_2D[0], CODES_2D[2]])
    assert_close(z.grad, 0.4 * 2 * (z.detach() - chosen) / 6)
    assert_close(soft.codebook.weight.grad[1], (2 * (chosen - z.detach()) / 6)[0, :, 0, 0])


def test_soft_quantizer_mixes_codes_in_training_and_picks_nearest_at_eval():
    soft = build_quantizer("soft", 2, {"codebook_size": 3, "temperature": 0.5, "kmeans_init": False,
                                       "relative_temperature": False})
    with torch.no_grad():
        soft.codebook.weight.copy_(torch.tensor(CODES_2D))
    z = grid_z(POINTS_2D)
    x, codes = torch.tensor(POINTS_2D), torch.tensor(CODES_2D)
    weights = F.softmax(-torch.cdist(x, codes).pow(2) / 0.5, dim=-1)
    assert_close(soft.train()(z).z_q, grid_z((weights @ codes).tolist()))
    out = soft.eval()(z)
    assert out.codes.flatten().tolist() == [1, 0, 2]
    assert_close(out.z_q, grid_z([CODES_2D[1], CODES_2D[0], CODES_2D[2]]))


def test_soft_starts_from_kmeans_of_the_first_batch_and_anneals_to_hard():
    """k-means on the first training batch puts a code on every cluster (from the tiny uniform init, training on
    MNIST collapsed onto one code), and the mix sharpens into the nearest code as the temperature anneals."""
    torch.manual_seed(0)
    centres = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])
    points = (centres.repeat(8, 1) + 0.05 * torch.randn(32, 2)).tolist()
    z = grid_z(points)
    soft = build_quantizer("soft", 2, {"codebook_size": 4, "temperature": 1.0, "temperature_end": 0.01,
                                       "anneal_steps": 2}).train()
    first = soft(z)
    assert first.codes.unique().numel() == 4 and bool(soft.codebook.initialized)
    found = soft.codebook.weight.detach()
    assert torch.cdist(found, centres).min(1).values.max() < 0.1  # one code at each cluster
    assert first.stats["temperature"].item() == pytest.approx(1.0)
    soft(z)
    hard = soft(z)  # step 2: temperature_end, the mix is the nearest code
    assert hard.stats["temperature"].item() == pytest.approx(0.01)
    assert_close(hard.z_q, soft.eval()(z).z_q, atol=1e-4)
    assert torch.equal(soft.codebook.weight.detach(), found)  # initialised once, not at every step


# --- fsq and lfq ----------------------------------------------------------------------------------------------------
def test_fsq_codes_values_and_gradient_by_hand():
    fsq = build_quantizer("fsq", 2, {"levels": [5, 4]})
    assert fsq.project_in is None and fsq.codebook_sizes == [20]
    z = grid_z([[0.0, 0.0], [10.0, 10.0], [-10.0, -10.0], [0.7, -0.6]]).requires_grad_(True)
    out = fsq(z)
    # level 5: integers -2..2 over half width 2; level 4: -2..1 over half width 2. code = d0 + 5 * d1.
    # 0.7 -> 2.002 tanh(0.7) = 1.21 -> 1; -0.6 with level 4 -> 1.5015 tanh(-0.6 + atanh(0.5 / 1.5015)) - 0.5 -> -1
    assert out.codes.flatten().tolist() == [2 + 5 * 2, 4 + 5 * 3, 0, 3 + 5 * 1]
    assert_close(out.z_q, grid_z([[0.0, 0.0], [1.0, 0.5], [-1.0, -1.0], [0.5, -0.5]]))
    assert out.loss.item() == 0.0
    out.z_q[0, 0, 0, 0].backward()
    # straight-through round: d z_q / d z = bound'(0) / half width = 2 (1 + eps) / 2 for level 5 at 0
    assert z.grad[0, 0, 0, 0].item() == pytest.approx(1.001, rel=1e-5)
    grid = fsq.decode_codes(torch.arange(20).view(1, 1, 20, 1))[0].reshape(2, 20).t()
    expected = {(a / 2, b / 2) for a in range(-2, 3) for b in range(-2, 2)}
    assert {tuple(p) for p in grid.tolist()} == expected  # every code is a distinct grid point


def brute_force_lfq(x: torch.Tensor, temperature: float):
    bits = x.shape[1]
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=bits)))
    p = F.softmax(-torch.cdist(x.double(), corners.double()).pow(2) / temperature, dim=-1)
    sample = -(p * p.clamp_min(1e-300).log()).sum(-1).mean()
    mean = p.mean(0)
    return sample, -(mean * mean.clamp_min(1e-300).log()).sum()


@pytest.mark.parametrize("bits", [1, 3, 5])
def test_lfq_factorised_entropies_equal_the_sum_over_all_codes(bits):
    x = torch.randn(50, bits, generator=torch.Generator().manual_seed(bits))
    sample, codebook = lfq_entropies(x, 0.7)
    expected_sample, expected_codebook = brute_force_lfq(x, 0.7)
    assert sample.item() == pytest.approx(expected_sample.item(), rel=1e-4)
    assert codebook.item() == pytest.approx(expected_codebook.item(), rel=1e-4)


def test_lfq_codes_and_loss_by_hand():
    options = {"bits": 3, "commitment_weight": 0.3, "entropy_weight": 0.2, "sample_entropy_weight": 1.0,
               "codebook_entropy_weight": 0.5, "entropy_temperature": 0.8}
    lfq = build_quantizer("lfq", 3, options)
    points = [[0.5, -0.2, 0.9], [-1.3, 0.4, 0.1], [-0.3, -0.6, -0.2]]
    out = lfq(grid_z(points))
    assert out.codes.flatten().tolist() == [1 + 4, 2 + 4, 0]  # bit i set when channel i is positive
    assert_close(out.z_q, grid_z([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]))
    x = torch.tensor(points)
    sample, codebook = brute_force_lfq(x, 0.8)
    commitment = ((x - torch.sign(x)) ** 2).mean()
    expected = 0.3 * commitment + 0.2 * (sample - 0.5 * codebook)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# --- configs ------------------------------------------------------------------------------------------------------
def test_every_option_has_a_typed_default_and_wrong_types_are_refused():
    for name, (_, config_cls) in QUANTIZERS.items():
        for option, field in config_cls.model_fields.items():
            assert not field.is_required(), f"{name}.{option} has no plain default"
    for name, options in [("fsq", {"levels": [8, "a"]}), ("gumbel", {"hard": 1}), ("lfq", {"bits": 9.5}),
                          ("vq", {"codebook_dim": True}), ("rvq", {"quantizer_dropout": "0.1"})]:
        with pytest.raises(ValueError, match=next(iter(options))):
            make_quantizer_config(name, options)
    assert make_quantizer_config("fsq", {"levels": [8, 8, 8]}).levels == [8, 8, 8]


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_tokenizer_config_validates_builds_and_trains_one_step(name):
    # The tokenizer section is validated by the tokenizer's own schema; the whole-experiment loader
    # (pipeline.config.load_config) adds only the data and train sections, and importing it costs seconds.
    from stage1_tokenizer.config import TokenizerConfig
    from stage1_tokenizer.tokenizer import build_tokenizer

    config = yaml.safe_load((REPO / "configs" / "tokenizer" / f"{name}.yaml").read_text())
    assert set(config) == {"data", "tokenizer"} and config["data"] == {"name": "mnist", "image_size": 32}
    section = {key: value for key, value in config["tokenizer"].items() if key != "train"}  # training options
    architecture = TokenizerConfig(**{**section, "hidden_channels": 16, "res_channels": 8})
    assert architecture.quantizer.name == name
    torch.manual_seed(0)
    model = build_tokenizer(architecture).train()
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    recon, quant = model(images)
    assert recon.shape == images.shape and quant.codes.shape[1:3] == (8, 8)
    (F.mse_loss(recon, images) + quant.loss).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.encoder.parameters() if p.grad is not None)
