"""Lightning module that trains a tokenizer: reconstruction loss plus the quantizer's own loss."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn

from pipeline.core.images import to_float
from pipeline.core.optim import TrainConfig, make_optimizer

from .config import TokenizerConfig
from .evaluate import low_usage_message
from .losses import reconstruction_loss
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

    def setup(self, stage: str) -> None:
        if self.train_config.channels_last:  # here, before DDP wraps the model and records its gradient layout
            self.model.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        # Schedules given as fractions of the run (temperatures, KL ramps) need its length in forward passes;
        # a run with no end leaves them unknown, and the quantizers say so.
        steps = self.trainer.estimated_stepping_batches
        if math.isfinite(steps):
            for quantizer in self.model.quantizers().values():
                quantizer.set_run_length(max(1, int(steps) * self.trainer.accumulate_grad_batches))

    def _images(self, batch) -> torch.Tensor:
        images = to_float(batch[0])
        return images.contiguous(memory_format=torch.channels_last) if self.train_config.channels_last else images

    def training_step(self, batch, batch_idx):
        images = self._images(batch)
        output, quant = self.model(images)
        recon_loss = reconstruction_loss(output, images, self.config.recon_loss, self.config.bounded_output)
        loss = recon_loss + quant.loss
        self.log("train/loss", loss, prog_bar=True)
        self.log(f"train/recon_{self.config.recon_loss}", recon_loss)
        for name, value in quant.stats.items():
            self.log(f"train/{name}", value)
        return loss

    def on_train_epoch_end(self) -> None:
        # Usage over the whole epoch (reduced across processes inside epoch_stats), not the last batch.
        quantizers = self.model.quantizers()
        for level, quantizer in quantizers.items():
            prefix = "epoch/" if len(quantizers) == 1 else f"epoch/{level}/"
            stats = quantizer.epoch_stats()
            for name, value in stats.items():
                self.log(f"{prefix}{name}", value, prog_bar=name == "perplexity", sync_dist=False)
            warning = low_usage_message(level, stats.get("usage", 1.0), max(quantizer.codebook_sizes),
                                        f"epoch {self.current_epoch}")
            if warning:
                rank_zero_warn(warning)

    def validation_step(self, batch, batch_idx):
        images = self._images(batch)
        recon = self.model.output_to_image(self.model(images)[0])
        self.log("val/recon_mse", F.mse_loss(recon, images), sync_dist=True)
        self.log("val/psnr", psnr(recon, images).mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return make_optimizer(self, self.train_config)
