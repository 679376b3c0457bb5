"""Lightning module that trains a tokenizer: reconstruction loss plus the quantizer's own loss, and optionally
LPIPS and an EMA copy of the weights (the adversarial term is in :mod:`.adversarial_module`)."""

from __future__ import annotations

import copy
import math

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from pipeline.core.images import to_float
from pipeline.core.optim import TrainConfig, make_optimizer

from .config import TokenizerConfig, TokenizerLossConfig
from .evaluate import low_usage_message
from .losses import loss_image, reconstruction_loss
from .perceptual import load_lpips
from .quantizers.distributed import all_reduce_sum_
from .quantizers.usage import count_codes, usage_figures
from .tokenizer import build_tokenizer


def psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2), per image, after clamping the reconstruction."""
    mse = (recon.clamp(-1, 1) - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float) -> None:
    """Parameters move ``1 - decay`` of the way to the model's; buffers (codebook statistics, schedules) are copied."""
    for avg, live in zip(average.parameters(), model.parameters()):
        avg.lerp_(live.detach(), 1.0 - decay)
    for avg, live in zip(average.buffers(), model.buffers()):
        avg.copy_(live)


class TokenizerModule(L.LightningModule):
    def __init__(self, config: TokenizerConfig, train_config: TrainConfig, loss_config: TokenizerLossConfig | None = None):
        super().__init__()
        self.config = config
        self.train_config = train_config
        self.loss_config = loss_config or TokenizerLossConfig()
        self.model = build_tokenizer(config)
        self.save_hyperparameters({"tokenizer": config.model_dump(), "train": train_config.model_dump(),
                                   "loss": self.loss_config.model_dump()})
        # Kept out of the state dict and the optimizer (object.__setattr__ skips registration): LPIPS is a fixed
        # metric with its own weights file, not something a checkpoint should carry.
        lpips = load_lpips(self.loss_config.lpips_weights) if self.loss_config.perceptual_weight > 0 else None
        object.__setattr__(self, "lpips", lpips)
        self.ema_model = None
        if self.loss_config.ema_decay > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)

    def evaluation_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the EMA copy when there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    def setup(self, stage: str) -> None:
        if self.train_config.channels_last:  # here, before DDP wraps the model and records its gradient layout
            self.model.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        if self.lpips is not None:  # unregistered, so Lightning does not move it; by now the module is on its device
            self.lpips.to(self.device)
        # Schedules given as fractions of the run (temperatures, KL ramps) need its length in forward passes;
        # a run with no end leaves them unknown, and the quantizers say so.
        steps = self.total_steps()
        if steps is not None:
            for quantizer in self.model.quantizers().values():
                quantizer.set_run_length(max(1, steps * self.trainer.accumulate_grad_batches))

    def total_steps(self) -> int | None:
        steps = self.trainer.estimated_stepping_batches
        return int(steps) if math.isfinite(steps) else None

    def _images(self, batch) -> torch.Tensor:
        images = to_float(batch[0])
        return images.contiguous(memory_format=torch.channels_last) if self.train_config.channels_last else images

    def _common_step(self, images: torch.Tensor):
        """Decoder output, quantizer output, the reconstruction objective (with LPIPS) and the terms to log."""
        output, quant = self.model(images)
        recon_loss = reconstruction_loss(output, images, self.config.recon_loss, self.config.bounded_output)
        terms = {f"recon_{self.config.recon_loss}": recon_loss}
        objective = recon_loss
        if self.lpips is not None:
            shown = loss_image(output, self.config.recon_loss, self.config.bounded_output)
            perceptual = self.lpips(shown, images).mean()
            objective = objective + self.loss_config.perceptual_weight * perceptual
            terms["lpips"] = perceptual
        return output, quant, objective, terms

    def _log_terms(self, loss: torch.Tensor, quant, terms: dict[str, torch.Tensor]) -> None:
        self.log("train/loss", loss, prog_bar=True)
        for name, value in {**terms, **quant.stats}.items():
            self.log(f"train/{name}", value)

    def training_step(self, batch, batch_idx):
        _, quant, objective, terms = self._common_step(self._images(batch))
        loss = objective + quant.loss
        self._log_terms(loss, quant, terms)
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_average()

    def update_average(self) -> None:
        """After each optimizer step (not at batch end, where a step checkpoint may already have been written)."""
        if self.ema_model is not None:  # the decay warms up, so the average is not stuck near the initial weights
            step = self.global_step
            update_ema(self.ema_model, self.model, min(self.loss_config.ema_decay, (1 + step) / (10 + step)))

    def on_train_epoch_end(self) -> None:
        # Usage over the whole epoch (reduced across processes inside epoch_stats), not the last batch.
        quantizers = self.model.quantizers()
        for level, quantizer in quantizers.items():
            prefix = "epoch/" if len(quantizers) == 1 else f"epoch/{level}/"
            stats = quantizer.epoch_stats()
            for name, value in stats.items():
                self.log(f"{prefix}{name}", value, prog_bar=name == "perplexity", sync_dist=False)
            if not self.trainer.num_val_batches or not sum(self.trainer.num_val_batches):
                # No validation: warn from the training codes (sampled ones for gumbel and sq).
                self._warn_low_usage(level, stats.get("usage", 1.0), quantizer.codebook_sizes)

    def _warn_low_usage(self, level: str, usage: float, codebook_sizes: list[int]) -> None:
        warning = low_usage_message(level, usage, max(codebook_sizes), f"epoch {self.current_epoch}")
        if warning:
            rank_zero_warn(warning)

    def on_validation_epoch_start(self) -> None:
        self._val_sizes = {name: spec["codebook_sizes"] for name, spec in self.model.levels().items()}
        self._val_counts = {name: torch.zeros(sum(sizes), dtype=torch.long, device=self.device)
                            for name, sizes in self._val_sizes.items()}

    def validation_step(self, batch, batch_idx):
        images = self._images(batch)
        model = self.evaluation_model()
        output, quant = model(images)
        recon = model.output_to_image(output)
        self.log("val/recon_mse", F.mse_loss(recon, images), sync_dist=True)
        self.log("val/psnr", psnr(recon, images).mean(), prog_bar=True, sync_dist=True)
        codes = quant.codes if isinstance(quant.codes, dict) else {next(iter(self._val_sizes)): quant.codes}
        for name, level_codes in codes.items():
            count_codes(self._val_counts[name], level_codes, self._val_sizes[name])

    def on_validation_epoch_end(self) -> None:
        # The codes evaluation and tokenize give (nearest, not sampled): what the usage warning is about.
        for name, counts in self._val_counts.items():
            figures = usage_figures(all_reduce_sum_(counts), self._val_sizes[name])
            if not figures:  # no validation batch anywhere
                continue
            prefix = "val/" if len(self._val_sizes) == 1 else f"val/{name}/"
            self.log(f"{prefix}perplexity", figures["perplexity"], sync_dist=False)
            self.log(f"{prefix}usage", figures["usage"], sync_dist=False)
            if not self.trainer.sanity_checking:
                self._warn_low_usage(name, figures["usage"], self._val_sizes[name])

    def configure_optimizers(self):
        return make_optimizer(self, self.train_config, params=list(self.model.parameters()))
