"""Lightning module that trains a tokenizer: reconstruction loss plus the quantizer's own loss."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from pipeline.datasets import to_float
from pipeline.training import TrainConfig, make_optimizer

from .config import TokenizerConfig
from .tokenizer import build_tokenizer


def psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2), per image, after clamping the reconstruction."""
    mse = (recon.clamp(-1, 1) - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


class TokenizerModule(L.LightningModule):
    def __init__(self, config: TokenizerConfig, train_config: TrainConfig):
        super().__init__()
        self.config = config
        self.train_config = train_config
        self.model = build_tokenizer(config)
        self.save_hyperparameters({"tokenizer": config.model_dump(), "train": train_config.model_dump()})

    def training_step(self, batch, batch_idx):
        images = to_float(batch[0])
        recon, quant = self.model(images)
        recon_loss = F.mse_loss(recon, images)
        loss = recon_loss + quant.loss
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/recon_mse", recon_loss)
        for name, value in quant.stats.items():
            self.log(f"train/{name}", value)
        return loss

    def on_train_epoch_end(self) -> None:
        # Usage over the whole epoch (reduced across processes inside epoch_stats), not the last batch.
        for name, value in self.model.quantizer.epoch_stats().items():
            self.log(f"epoch/{name}", value, prog_bar=name == "perplexity", sync_dist=False)

    def validation_step(self, batch, batch_idx):
        images = to_float(batch[0])
        recon, quant = self.model(images)
        self.log("val/recon_mse", F.mse_loss(recon, images), sync_dist=True)
        self.log("val/psnr", psnr(recon, images).mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return make_optimizer(self, self.train_config)
