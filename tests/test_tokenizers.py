"""Tokenizer models: VQ-VAE and VQ-VAE-2 in both network flavours, the reconstruction losses, evaluation."""

import math

import pytest
import torch

from stage1_tokenizer.config import TokenizerConfig
from stage1_tokenizer.evaluate import ssim
from stage1_tokenizer.losses import LOGIT_LAPLACE_EPS, reconstruction_loss, to_image
from stage1_tokenizer.tokenizer import Tokenizer, build_tokenizer


def tiny(**kw):
    torch.manual_seed(0)
    base = dict(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8, image_size=16,
                quantizer={"name": "vq", "codebook_size": 16})
    return build_tokenizer(TokenizerConfig(**{**base, **kw}))


@pytest.mark.parametrize("arch", ["vqvae", "vqvae2"])
@pytest.mark.parametrize("network", ["deepmind", "dalle"])
def test_encode_decode_round_trip_and_save_load(arch, network, tmp_path):
    model = tiny(arch=arch, network=network).eval()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    codes = model.encode(x)
    expected = {"vqvae": {"codes": (3, 4, 4, 1)}, "vqvae2": {"top": (3, 2, 2, 1), "bottom": (3, 4, 4, 1)}}[arch]
    assert {k: tuple(v.shape) for k, v in codes.items()} == expected
    assert {k: v["grid"] for k, v in model.levels().items()} == {k: list(s[1:3]) for k, s in expected.items()}
    # decoding the codes gives exactly the reconstruction
    assert torch.allclose(model.decode(codes), model.reconstruct(x), atol=1e-5)
    model.save(tmp_path / "tok")
    loaded = Tokenizer.load(tmp_path / "tok")
    assert all(torch.equal(loaded.encode(x)[k], codes[k]) for k in codes)


def test_vqvae2_bottom_codes_depend_on_the_top():
    model = tiny(arch="vqvae2").eval()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    codes = model.encode(x)
    other_top = {"top": (codes["top"] + 1) % 16, "bottom": codes["bottom"]}
    assert not torch.allclose(model.decode(codes), model.decode(other_top))


@pytest.mark.parametrize("loss", ["mse", "l1", "logit_laplace"])
def test_gradient_reaches_the_encoder_for_every_loss(loss):
    model = tiny(recon_loss=loss).train()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    output, quant = model(x)
    (reconstruction_loss(output, x, loss) + quant.loss).backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0


def test_logit_laplace_against_hand_computation():
    mu, log_b = torch.tensor(0.3), torch.tensor(-0.5)
    pixel = 0.8  # in [0, 1]
    output = torch.stack([mu, log_b]).view(1, 2, 1, 1)
    target = torch.tensor(pixel * 2 - 1).view(1, 1, 1, 1)
    y = pixel * (1 - 2 * LOGIT_LAPLACE_EPS) + LOGIT_LAPLACE_EPS
    b = math.exp(-0.5)
    expected = math.log(2 * b) + math.log(y * (1 - y)) + abs(math.log(y / (1 - y)) - 0.3) / b
    assert abs(reconstruction_loss(output, target, "logit_laplace").item() - expected) < 1e-5
    # the image is the squeezed sigmoid(mu) mapped back to [-1, 1]
    image = to_image(output, "logit_laplace").item()
    assert abs(image - (((1 / (1 + math.exp(-0.3))) - 0.1) / 0.8 * 2 - 1)) < 1e-6


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 16, 16)
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-5)
    assert (ssim(a, (a + 0.3 * torch.randn_like(a)).clamp(0, 1)) < 0.9).all()


def test_downsample_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        TokenizerConfig(downsample=3)


def test_epoch_usage_is_logged_over_every_batch_of_the_epoch(tmp_path):
    """The Lightning module logs epoch/perplexity, usage and dead codes from the codes of all the epoch's batches,
    not from its last batch (which the per-step train/perplexity shows)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from pipeline.core.optim import TrainConfig
    from stage1_tokenizer.lightning_module import TokenizerModule

    torch.manual_seed(0)
    config = TokenizerConfig(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8, image_size=16,
                             quantizer={"name": "vq", "codebook_size": 32, "kmeans_init": True})
    module = TokenizerModule(config, TrainConfig(lr=1e-12))  # weights barely move: the codes below stay valid
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    images[32:] = 0  # the last batch is blank: few codes, unlike the epoch (k-means spreads the codes over batch 1)
    loader = DataLoader(TensorDataset(images, torch.zeros(40, dtype=torch.long)), batch_size=8)  # 5 batches
    seen = []
    quantizer = module.model.quantizer
    record = quantizer.record_usage
    quantizer.record_usage = lambda codes: (seen.append(codes.clone()), record(codes))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, loader)

    assert len(seen) == 5
    counts = torch.bincount(torch.cat(seen).flatten(), minlength=32).double()
    probs = counts[counts > 0] / counts.sum()
    logged = trainer.logged_metrics
    assert logged["epoch/perplexity"].item() == pytest.approx(math.exp(-(probs * probs.log()).sum().item()), rel=1e-4)
    assert logged["epoch/usage"].item() == pytest.approx((counts > 0).double().mean().item())
    assert logged["epoch/dead_codes"].item() == (counts == 0).sum().item()
    last = torch.bincount(seen[-1].flatten(), minlength=32)
    assert (counts > 0).sum() > (last > 0).sum()  # the epoch saw codes the last batch did not


def test_validation_usage_counts_the_evaluation_codes_and_warns_from_them(tmp_path):
    """SQ trains on codes sampled from its posterior; val/perplexity and val/usage (what the end-of-training line
    and the low-usage warning use) come from the nearest codes that evaluation and tokenize give."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from pipeline.core.images import to_float
    from pipeline.core.optim import TrainConfig
    from stage1_tokenizer.lightning_module import TokenizerModule

    torch.manual_seed(0)
    config = TokenizerConfig(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8, image_size=16,
                             recon_loss="gaussian", quantizer={"name": "sq", "codebook_size": 64})
    module = TokenizerModule(config, TrainConfig(lr=1e-12))
    train = torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8)
    val = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
    loader = lambda images: DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=8)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        num_sanity_val_steps=0)
    with pytest.warns(UserWarning, match="most of the vocabulary is dead"):
        trainer.fit(module, loader(train), loader(val))

    module.model.eval()
    with torch.no_grad():
        codes = module.model.encode(to_float(val))["codes"]
    counts = torch.bincount(codes.flatten(), minlength=64).double()
    probs = counts[counts > 0] / counts.sum()
    logged = trainer.logged_metrics
    assert logged["val/perplexity"].item() == pytest.approx(math.exp(-(probs * probs.log()).sum().item()), rel=1e-4)
    assert logged["val/usage"].item() == pytest.approx((counts > 0).double().mean().item())
    assert logged["val/usage"].item() < 0.5 < logged["epoch/usage"].item()  # sampled codes spread, nearest do not
