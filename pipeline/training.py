"""The Lightning Trainer both stages use: rich progress, CSV logs, atomic checkpoints, resume from last.ckpt."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from .errors import VqgenError
from .files import atomic_path

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: PositiveInt = 128
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    max_epochs: int = Field(10, ge=-1)
    max_steps: int = Field(-1, ge=-1)
    accumulate_grad_batches: PositiveInt = 1
    gradient_clip_val: Optional[PositiveFloat] = None
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: Union[int, str, list[int]] = 1
    num_nodes: PositiveInt = 1
    num_workers: int = Field(0, ge=0)
    log_every_n_steps: PositiveInt = 10
    val_check_interval: Optional[Union[PositiveInt, PositiveFloat]] = None
    profiler: Optional[Literal["simple", "advanced", "pytorch"]] = None
    compile: bool = False  # torch.compile the model before training


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class NonFiniteLossGuard(Callback):
    """Stop at the first NaN/Inf loss, naming the step and the last good checkpoint."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            last = self.checkpoint_dir / LAST_CHECKPOINT
            where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise VqgenError(
                f"the loss became {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                f"{where}. Lower the learning rate or enable gradient clipping (train.gradient_clip_val)."
            )


def lr_lambda(config: TrainConfig, total_steps: int):
    """Linear warmup, then constant or cosine decay to 10% of the peak."""

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant" or total_steps <= config.warmup_steps:
            return 1.0
        progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(module: L.LightningModule, config: TrainConfig, betas=(0.9, 0.99)):
    """AdamW with a per-step LR schedule; used by every stage's ``configure_optimizers``."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=betas)
    total = module.trainer.estimated_stepping_batches if module._trainer is not None else 1
    total = int(total) if math.isfinite(total) else 1
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def build_trainer(config: TrainConfig, out_dir: Path, has_validation: bool = True) -> L.Trainer:
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=0, every_n_epochs=1),
        NonFiniteLossGuard(checkpoint_dir),
    ]
    if os.environ.get("VQGEN_NO_PROGRESS") != "1":
        callbacks.append(RichProgressBar(leave=True))
    kwargs: dict[str, Any] = {}
    if config.val_check_interval is not None:
        kwargs["val_check_interval"] = config.val_check_interval
    return L.Trainer(
        default_root_dir=str(out_dir),
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        precision=config.precision,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        log_every_n_steps=config.log_every_n_steps,
        logger=CSVLogger(str(out_dir), name="logs", version=0),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        profiler=config.profiler,
        enable_progress_bar=os.environ.get("VQGEN_NO_PROGRESS") != "1",
        enable_model_summary=False,
        limit_val_batches=1.0 if has_validation else 0,
        num_sanity_val_steps=0,
        **kwargs,
    )


def fit(trainer: L.Trainer, module: L.LightningModule, train_loader, val_loader, out_dir: Path) -> None:
    """Train, resuming from ``checkpoints/last.ckpt`` when an earlier run of the same step left one."""
    last = out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    ckpt_path = str(last) if last.exists() else None
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
