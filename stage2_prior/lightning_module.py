"""Lightning module that trains any prior through its ``loss(codes, labels)``."""

from __future__ import annotations

import math

import lightning as L
import torch

from pipeline.core.optim import TrainConfig, make_optimizer


class PriorModule(L.LightningModule):
    def __init__(self, prior: torch.nn.Module, train_config: TrainConfig):
        super().__init__()
        self.prior = prior
        self.train_config = train_config
        self.conditional = prior.config.num_classes > 0
        self.save_hyperparameters({"prior": prior.config.model_dump(), "train": train_config.model_dump()})

    def _labels(self, labels: torch.Tensor):
        return labels if self.conditional else None

    def training_step(self, batch, batch_idx):
        codes, labels = batch
        loss = self.prior.loss(codes, self._labels(labels))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bits_per_code", loss / math.log(2))
        return loss

    def validation_step(self, batch, batch_idx):
        codes, labels = batch
        loss = self.prior.loss(codes, self._labels(labels))
        self.log("val/bits_per_code", loss / math.log(2), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return make_optimizer(self, self.train_config, betas=(0.9, 0.95))
