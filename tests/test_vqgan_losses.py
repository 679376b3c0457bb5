"""VQGAN terms: LPIPS as its authors compute it, the PatchGAN losses, the adaptive weight by hand, the discriminator's
start, resuming it bit for bit, and a finite generator loss with every quantizer."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.core.errors import VqgenError
from pipeline.core.optim import TrainConfig
from stage1_tokenizer import perceptual
from stage1_tokenizer.adversarial_module import AdversarialTokenizerModule, training_module
from stage1_tokenizer.config import TokenizerConfig, TokenizerLossConfig
from stage1_tokenizer.discriminator import (LeCam, PatchDiscriminator, adaptive_weight, discriminator_loss,
                                            generator_loss)
from stage1_tokenizer.perceptual import LPIPS, load_lpips

QUANTIZERS = {
    "vq": {"name": "vq", "codebook_size": 16}, "ema": {"name": "ema", "codebook_size": 16},
    "gumbel": {"name": "gumbel", "codebook_size": 16}, "fsq": {"name": "fsq", "levels": [4, 4]},
    "lfq": {"name": "lfq", "bits": 4}, "rvq": {"name": "rvq", "codebook_size": 16, "depth": 2},
    "pq": {"name": "pq", "codebook_size": 16, "groups": 2}, "sq": {"name": "sq", "codebook_size": 16},
    "soft": {"name": "soft", "codebook_size": 16},
}


def _random_vgg_file(tmp_path, heads: bool = True, suffix: str = ".pth"):
    """A weights file with the right keys and shapes (random values): what a user's local copy looks like."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in LPIPS().features.state_dict().items()}
    if heads:
        state.update({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(perceptual.CHANNELS)})
    path = tmp_path / f"vgg{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path, state


def test_lpips_equals_the_authors_package_on_the_same_weights(tmp_path):
    import lpips as reference_lpips

    reference = reference_lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    # lpips splits VGG16's features into slices with the original indices: sliceK.N.* is features.N.*.
    backbone = {f"features.{key.split('.', 1)[1]}": value for key, value in reference.net.state_dict().items()}
    path = tmp_path / "vgg.pth"
    torch.save(backbone, path)
    ours = load_lpips(str(path))  # heads from the package, like the reference
    torch.manual_seed(1)
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    expected = reference(x, y).flatten()
    assert torch.allclose(ours(x, y), expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(ours(x, x), torch.zeros(4), atol=1e-6)
    grey = torch.rand(2, 1, 32, 32) * 2 - 1  # MNIST: one channel, repeated as lpips would see it
    assert torch.allclose(ours(grey, grey.flip(-1)), reference(grey.repeat(1, 3, 1, 1), grey.flip(-1).repeat(1, 3, 1, 1)).flatten(),
                          rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_lpips_loads_a_local_file_with_its_heads(tmp_path, suffix):
    path, state = _random_vgg_file(tmp_path, suffix=suffix)
    model = load_lpips(str(path))
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.heads[3].weight, state["lin3.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())


def test_lpips_from_the_environment_and_clear_errors(tmp_path, monkeypatch):
    path, _ = _random_vgg_file(tmp_path, heads=False)
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(path))
    assert isinstance(load_lpips(), LPIPS)  # heads come from the lpips package
    with pytest.raises(VqgenError, match="does not exist"):
        load_lpips(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(VqgenError, match="features"):
        load_lpips(str(bad))


def test_offline_without_a_file_names_the_option_before_training(monkeypatch):
    monkeypatch.delenv(perceptual.WEIGHTS_ENV, raising=False)

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(perceptual, "_downloaded_backbone", offline)
    config = TokenizerConfig(hidden_channels=8, res_channels=4, n_res_blocks=0, embed_dim=4, image_size=8)
    with pytest.raises(VqgenError, match="lpips_weights") as err:
        training_module(config, TrainConfig(), TokenizerLossConfig(perceptual_weight=1.0))
    assert "perceptual_weight: 0" in str(err.value)


def test_hinge_and_non_saturating_losses_by_hand():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.5])
    hinge_d = 0.5 * ((0 + 0.5 + 2.0) / 3 + (0 + 1.0 + 2.5) / 3)
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(hinge_d)
    assert generator_loss(fake, "hinge").item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)
    softplus = lambda v: torch.log1p(torch.exp(torch.tensor(v))).item()  # noqa: E731
    ns_d = 0.5 * (sum(softplus(-r) for r in (2.0, 0.5, -1.0)) / 3 + sum(softplus(f) for f in (-2.0, 0.0, 1.5)) / 3)
    assert discriminator_loss(real, fake, "non_saturating").item() == pytest.approx(ns_d, rel=1e-6)
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(
        sum(softplus(-f) for f in (-2.0, 0.0, 1.5)) / 3, rel=1e-6)


def test_adaptive_weight_matches_a_hand_computation():
    """y = w x with a 2-vector w: rec = ||y - t||^2 and adv = -sum(a * y); their gradients in w by hand."""
    w = torch.tensor([0.5, -1.0], requires_grad=True)
    x, t, a = torch.tensor([2.0, 3.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.3, 0.4])
    y = w * x
    rec, adv = (y - t).pow(2).sum(), -(a * y).sum()
    rec_grad = 2 * (w.detach() * x - t) * x  # [0, -24]
    adv_grad = -a * x  # [-0.6, -1.2]
    expected = rec_grad.norm() / (adv_grad.norm() + 1e-4)
    assert adaptive_weight(rec, adv, w).item() == pytest.approx(expected.item(), rel=1e-6)
    huge = adaptive_weight((y * 1e9).sum(), adv * 1e-9, w)
    assert huge.item() == 1e4  # clamped


def test_patch_discriminator_judges_patches_and_lecam_tracks_averages():
    disc = PatchDiscriminator(3, channels=8, layers=3)
    assert disc(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)  # 32 -> 16 -> 8 -> 4 -> 3 -> 2, as taming's
    assert PatchDiscriminator(1, channels=8, layers=2, norm="none")(torch.randn(2, 1, 32, 32)).shape == (2, 1, 6, 6)
    lecam = LeCam(decay=0.5)
    real, fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    value = lecam(real, fake)
    assert lecam.ema_real.item() == 1.0 and lecam.ema_fake.item() == -1.0
    assert value.item() == pytest.approx((2.0 + 1.0) ** 2 + (1.0 + 2.0) ** 2)


def _tiny(quantizer=None) -> TokenizerConfig:
    return TokenizerConfig(hidden_channels=8, res_channels=4, n_res_blocks=1, embed_dim=4, image_size=16,
                           downsample=4, quantizer=quantizer or {"name": "vq", "codebook_size": 16})


def _loader(n=16, batch=8):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8)
    return DataLoader(TensorDataset(images, torch.zeros(n, dtype=torch.long)), batch_size=batch)


def _trainer(tmp_path, steps, **kwargs):
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def test_discriminator_is_off_before_its_start_step(tmp_path):
    torch.manual_seed(0)
    module = AdversarialTokenizerModule(_tiny(), TrainConfig(lr=1e-3),
                                        TokenizerLossConfig(adversarial_weight=0.5, disc_start_steps=3, disc_layers=2))
    before = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    _trainer(tmp_path, 3, enable_checkpointing=False).fit(module, _loader(24))
    assert module.global_step == 3  # the discriminator's steps are not training steps
    assert all(torch.equal(v, module.discriminator.state_dict()[k]) for k, v in before.items())
    _trainer(tmp_path, 4, enable_checkpointing=False).fit(module, _loader(8))
    assert module.global_step >= 4
    assert any(not torch.equal(v, module.discriminator.state_dict()[k]) for k, v in before.items())


def test_a_resumed_run_restores_the_discriminator_bit_for_bit(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(steps, resume=None, folder="a"):
        L.seed_everything(0, verbose=False)
        module = AdversarialTokenizerModule(_tiny(), TrainConfig(lr=1e-3), TokenizerLossConfig(
            adversarial_weight=0.5, disc_start_fraction=0.0, lecam_weight=0.1, ema_decay=0.9, disc_layers=2))
        checkpoints = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True, every_n_train_steps=2)
        trainer = _trainer(tmp_path / folder, steps, callbacks=[checkpoints])
        trainer.fit(module, _loader(16, 8), ckpt_path=resume)  # two batches an epoch: checkpoints at epoch ends
        return module, trainer

    run(2, folder="b")  # stops after 2 steps: a checkpoint with the discriminator and both optimizers
    saved = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert any(k.startswith("discriminator.") for k in saved["state_dict"])
    assert len(saved["optimizer_states"]) == 2
    resumed, _ = run(4, resume=str(tmp_path / "b" / "last.ckpt"), folder="b")
    straight, _ = run(4, folder="a")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("name", sorted(QUANTIZERS) + ["vqvae2"])
def test_generator_loss_is_finite_with_every_quantizer(tmp_path, name, lpips_weights_file):
    config = (_tiny(QUANTIZERS["vq"]).model_copy(update={"arch": "vqvae2", "downsample": 2})
              if name == "vqvae2" else _tiny(QUANTIZERS[name]))
    if name == "sq":
        config = config.model_copy(update={"recon_loss": "gaussian"})
    module = training_module(config, TrainConfig(lr=1e-3), TokenizerLossConfig(
        adversarial_weight=0.5, perceptual_weight=1.0, disc_start_steps=1, disc_layers=2))
    logged = []
    module.log = lambda name, value, **kw: logged.append((name, float(value)))
    _trainer(tmp_path, 3, enable_checkpointing=False).fit(module, _loader(24))
    values = dict(logged)
    for key in ("train/loss", "train/lpips", "train/g_adversarial", "train/d_loss", "train/adaptive_weight"):
        assert key in values and torch.isfinite(torch.tensor(values[key])), key


def test_ema_weights_are_what_is_evaluated():
    module = training_module(_tiny(), TrainConfig(), TokenizerLossConfig(ema_decay=0.99))
    assert module.evaluation_model() is module.ema_model
    assert not any(p.requires_grad for p in module.ema_model.parameters())
    assert training_module(_tiny(), TrainConfig(), TokenizerLossConfig()).evaluation_model() is not None
    params = [p for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"]]
    assert {id(p) for p in params} == {id(p) for p in module.model.parameters()}


def test_a_discriminator_too_deep_for_the_images_is_refused():
    with pytest.raises(VqgenError, match="use at most 2"):
        training_module(_tiny(), TrainConfig(), TokenizerLossConfig(adversarial_weight=1.0, disc_layers=3))


def test_accumulation_with_a_discriminator_is_refused():
    with pytest.raises(VqgenError, match="accumulate_grad_batches"):
        training_module(_tiny(), TrainConfig(accumulate_grad_batches=2),
                        TokenizerLossConfig(adversarial_weight=1.0, disc_layers=2))


def test_lpips_module_stays_out_of_checkpoints(lpips_weights_file):
    module = training_module(_tiny(), TrainConfig(), TokenizerLossConfig(perceptual_weight=1.0))
    assert isinstance(module.lpips, nn.Module)
    assert not any("lpips" in key for key in module.state_dict())


def test_tokenizer_eval_reports_lpips_when_its_weights_are_there(lpips_weights_file, monkeypatch):
    from pipeline.core.images import ImageData
    from stage1_tokenizer.evaluate import evaluate_tokenizer, optional_lpips
    from stage1_tokenizer.tokenizer import build_tokenizer

    torch.manual_seed(0)
    model = build_tokenizer(_tiny())
    data = ImageData(torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8), torch.zeros(6, dtype=torch.long),
                     ["0"], "random", "test")
    lpips, why_not = optional_lpips()
    metrics, _ = evaluate_tokenizer(model, data, batch_size=4, lpips=lpips)
    assert why_not is None and metrics["lpips"] > 0
    recon = model.decode(model.encode(data.images.float() / 127.5 - 1)).clamp(-1, 1)
    assert metrics["lpips"] == pytest.approx(lpips(recon, data.images.float() / 127.5 - 1).mean().item(), rel=1e-4)
    monkeypatch.delenv(perceptual.WEIGHTS_ENV)
    monkeypatch.setattr(perceptual, "_downloaded_backbone", lambda: (_ for _ in ()).throw(OSError("offline")))
    lpips, why_not = optional_lpips()
    assert lpips is None and "VGG16" in why_not
    assert evaluate_tokenizer(model, data, lpips=None)[0]["lpips"] is None
