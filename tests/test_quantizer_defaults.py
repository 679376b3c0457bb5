"""The defaults keep their promises: restarts catch a dead code quickly, schedules given as fractions end on the
run's last step, SQ-VAE's objective is the authors' (D/2) log MSE form, the decoder can reach the data's range ends,
and every shipped tokenizer config uses at least half of its codes on a small problem."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from stage1_tokenizer.config import TokenizerConfig
from stage1_tokenizer.evaluate import low_usage_message
from stage1_tokenizer.losses import reconstruction_loss
from stage1_tokenizer.quantizers import build_quantizer
from stage1_tokenizer.quantizers.codebook import Codebook, CodebookOptions
from stage1_tokenizer.tokenizer import build_tokenizer
from pipeline.core.optim import TrainConfig, lr_lambda

CONFIGS = sorted((Path(__file__).parent.parent / "configs" / "tokenizer").glob("*.yaml"))


def test_a_dead_code_is_restarted_within_the_promised_steps():
    """Defaults: usage EMA decay 0.9, threshold 1. A code nobody picks falls from the uniform share u = N/K to 1 in
    ceil(ln u / ln(1/0.9)) steps, and is then moved onto an encoder output."""
    torch.manual_seed(0)
    size, n = 16, 256
    upkeep = CodebookOptions(restart=True)
    book = Codebook(size, 2, options=upkeep).train()
    with torch.no_grad():
        book.weight.copy_(torch.randn(size, 2) * 0.1)
        book.weight[3] = torch.tensor([100.0, 100.0])  # far from every input: dead from the first step
    promised = math.ceil(math.log(n / size) / math.log(1 / upkeep.usage_decay))
    assert promised <= 30  # "within a few dozen steps" at MNIST's 16 vectors a code
    fired_at = None
    for step in range(1, 100):
        book(torch.randn(1, n, 2) * 0.1)
        if book.restarted_last_step and bool((book.weight[3].abs() < 10).all()):
            fired_at = step
            break
    assert fired_at is not None and fired_at <= promised + 1  # +1: the restart runs before the lookup of a step


def test_soft_restarts_a_dead_code_like_vq():
    """Soft quantization shares the codebook upkeep: a code far from every output is moved onto one."""
    torch.manual_seed(0)
    soft = build_quantizer("soft", 2, {"codebook_size": 16, "kmeans_init": False}).train()
    soft.set_run_length(100)
    with torch.no_grad():
        soft.codebook.weight.copy_(torch.randn(16, 2) * 0.1)
        soft.codebook.weight[3] = torch.tensor([100.0, 100.0])
    for _ in range(40):
        soft(torch.randn(4, 2, 8, 8) * 0.1)
        if bool((soft.codebook.weight[3].abs() < 10).all()):
            break
    assert bool((soft.codebook.weight[3].abs() < 10).all())
    off = build_quantizer("soft", 2, {"codebook_size": 16, "kmeans_init": False, "restart": False}).train()
    off.set_run_length(100)
    with torch.no_grad():
        off.codebook.weight[3] = torch.tensor([100.0, 100.0])
    for _ in range(40):
        off(torch.randn(4, 2, 8, 8) * 0.1)
    assert bool((off.codebook.weight[3] > 50).all())


@pytest.mark.parametrize("kind", ["gumbel", "sq", "soft"])
def test_schedules_given_as_fractions_reach_their_end_on_the_last_step(kind):
    options = {"gumbel": {"tau_start": 1.0, "tau_end": 0.1, "anneal_fraction": 1.0, "kl_weight": 0.2,
                          "kl_ramp_fraction": 0.5},
               "sq": {"tau_start": 1.0, "tau_end": 0.1, "anneal_fraction": 1.0},
               "soft": {"temperature": 1.0, "temperature_end": 0.1, "anneal_fraction": 1.0, "kmeans_init": False}}
    quantizer = build_quantizer(kind, 4, {"codebook_size": 8, **options[kind]}).train()
    run = 10
    quantizer.set_run_length(run)
    z = torch.randn(2, 4, 2, 2)
    temperatures = [quantizer(z).stats["temperature"].item() for _ in range(run)]
    assert temperatures[0] == pytest.approx(1.0)
    assert temperatures[-1] > 0.1  # the last step of the run still anneals...
    assert quantizer.temperature() == pytest.approx(0.1)  # ...and ends exactly where it should
    if kind == "gumbel":
        quantizer.step.zero_()
        weights = []
        for _ in range(run):
            weights.append(quantizer(z).stats["kl_weight"].item())
        assert weights[0] == pytest.approx(0.0) and weights[5] == pytest.approx(0.2)  # ramped over half the run


def test_fraction_schedules_hold_their_start_and_warn_without_a_run_length():
    gumbel = build_quantizer("gumbel", 4, {"codebook_size": 8}).train()
    with pytest.warns(UserWarning, match="set_run_length"):
        stats = gumbel(torch.randn(1, 4, 2, 2)).stats
    assert stats["temperature"].item() == pytest.approx(1.0) and stats["kl_weight"].item() == 0.0


def test_learning_rate_warmup_as_a_fraction_of_the_run():
    factor = lr_lambda(TrainConfig(warmup_fraction=0.1, lr_schedule="cosine"), total_steps=100)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(99) == pytest.approx(0.1, abs=1e-3)  # cosine to 10% of the peak at the end


def test_sq_objective_is_the_authors_per_image_elbo_divided_by_its_pixels():
    """Authors (sony/sqvae): loss = (D/2) log(sum of squared errors / batch) + per-image latent sums, averaged over
    the batch. vqgen's 0.5 log MSE + quantizer loss is that divided by D, up to the constant 0.5 log D."""
    torch.manual_seed(0)
    config = TokenizerConfig(recon_loss="gaussian", hidden_channels=8, res_channels=4, n_res_blocks=1, embed_dim=4,
                             image_size=8, downsample=2, bounded_output=False,
                             quantizer={"name": "sq", "codebook_size": 6, "init_variance": 2.0})
    model = build_tokenizer(config).eval()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    output, quant = model(x)
    ours = reconstruction_loss(output, x, "gaussian") + quant.loss

    pixels, batch = 64, 3
    z = model.encoder(x).permute(0, 2, 3, 1).reshape(batch, -1, 4)  # [B, positions, D]
    codes = model.quantizer.codebook.weight
    variance = 1.0 + 2.0
    distances = torch.cdist(z, codes[None].expand(batch, -1, -1)).pow(2)
    p = F.softmax(-distances / (2 * variance), -1)
    z_q = codes[distances.argmin(-1)]
    latent_per_image = ((z - z_q).pow(2).sum((1, 2)) / (2 * variance) + (p * p.log()).sum((1, 2))).mean()
    sse = (output - x).pow(2).sum() / batch
    authors = pixels / 2 * torch.log(sse) + latent_per_image
    assert ours.item() == pytest.approx((authors / pixels - 0.5 * math.log(pixels)).item(), rel=1e-5)


def test_gaussian_reconstruction_weights_errors_by_the_current_mse():
    """d(0.5 log MSE)/d output = (output - x) / (N * MSE): a decoder variance equal to the current error."""
    output = torch.tensor([0.5, -0.2, 0.1, 0.9], requires_grad=True)
    target = torch.tensor([0.0, 0.0, 0.3, 1.0])
    reconstruction_loss(output, target, "gaussian").backward()
    mse = (output - target).pow(2).mean()
    assert torch.allclose(output.grad, ((output - target) / (4 * mse)).detach(), atol=1e-6)


def test_bounded_output_lets_black_pixels_sit_below_the_range():
    output = torch.tensor([-1.7, -0.5, 1.3, 0.2], requires_grad=True)
    target = torch.tensor([-1.0, -1.0, 0.5, 0.2])
    reconstruction_loss(output, target, "mse", bounded=True).backward()
    # Below -1 with a black target: no error, no gradient. The others get the MSE gradient of the clamped value.
    assert output.grad.tolist() == pytest.approx([0.0, 2 * 0.5 / 4, 2 * 0.5 / 4, 0.0])


def test_usage_warning_under_half():
    assert low_usage_message("codes", 0.6, 512, "epoch 0") is None
    message = low_usage_message("codes", 0.3, 512, "epoch 2")
    assert "30%" in message and "512" in message and "epoch 2" in message


def _small_options(name: str, options: dict) -> tuple[int, dict]:
    """The config's own options (its schedules and weights), with a vocabulary of about 16 for a small problem."""
    options = dict(options)
    if name == "fsq":
        return 2, {**options, "levels": [4, 4]}
    if name == "lfq":
        return 4, {**options, "bits": 4}
    return 8, {**options, "codebook_size": 16}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_uses_at_least_half_its_codes_on_a_small_problem(path):
    """A linear encoder and decoder around the config's quantizer learn to reconstruct 64 clusters in 8-d.

    A smoke test of each config's options on a problem small enough for the suite; whether the defaults hold on real
    data and a real network is the MNIST table's job (results/mnist/tokenizers.json), which is an experiment."""
    torch.manual_seed(0)
    options = dict(yaml.safe_load(path.read_text())["tokenizer"]["quantizer"])
    name = options.pop("name")
    dim, options = _small_options(name, options)
    quantizer = build_quantizer(name, dim, options).train()
    encoder, decoder = torch.nn.Linear(8, dim), torch.nn.Linear(dim, 8)
    centers = torch.randn(64, 8) * 2
    params = [*encoder.parameters(), *decoder.parameters(), *quantizer.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    steps = 200
    quantizer.set_run_length(steps)
    for step in range(steps):
        if step == steps - 20:
            quantizer.epoch_stats()  # count the last 20 steps only
        x = centers[torch.randint(0, 64, (256,))] + 0.05 * torch.randn(256, 8)
        out = quantizer(encoder(x)[:, :, None, None])
        loss = F.mse_loss(decoder(out.z_q[:, :, 0, 0]), x) + out.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    usage = quantizer.epoch_stats()["usage"]
    assert usage >= 0.5, f"{path.stem}: {usage:.0%} of the codes used"


def test_soft_relative_temperature_is_in_units_of_the_nearest_distance():
    """Scaling the encoder outputs and the codes together leaves the relative mix unchanged; the absolute one not."""
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3)
    mixes = {}
    for relative in (True, False):
        for scale in (1.0, 10.0):
            soft = build_quantizer("soft", 4, {"codebook_size": 8, "kmeans_init": False, "anneal_steps": 10,
                                               "relative_temperature": relative}).train()
            with torch.no_grad():
                soft.codebook.weight.copy_(torch.randn(8, 4, generator=torch.Generator().manual_seed(1)) * scale)
            mixes[relative, scale] = soft(z * scale).z_q / scale
    assert torch.allclose(mixes[True, 1.0], mixes[True, 10.0], atol=1e-5)
    assert not torch.allclose(mixes[False, 1.0], mixes[False, 10.0], atol=1e-3)


def test_open_ended_runs_hold_the_learning_rate_and_leave_schedules_unset():
    """max_epochs = max_steps = -1: no run length, so no cosine decay from step 1 and no crash."""
    from pipeline.core.optim import make_optimizer

    class Module(torch.nn.Module):
        _trainer = None

    module = Module()
    module.weight = torch.nn.Parameter(torch.zeros(1))
    module._trainer = type("T", (), {"estimated_stepping_batches": float("inf")})()
    module.trainer = module._trainer
    scheduler = make_optimizer(module, TrainConfig(lr_schedule="cosine", warmup_fraction=0.1))["lr_scheduler"]
    factors = [scheduler["scheduler"].lr_lambdas[0](step) for step in (0, 10, 1000)]
    assert factors == [1.0, 1.0, 1.0]
