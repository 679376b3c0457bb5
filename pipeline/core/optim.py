"""Training options and the optimizer with its learning-rate schedule, which both stages' Lightning modules use."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

if TYPE_CHECKING:  # importing Lightning costs seconds; a config check must not pay for it
    import lightning as L


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: PositiveInt = 128
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    warmup_fraction: float = Field(0.0, ge=0, lt=1)  # used when warmup_steps is 0: warm-up as a share of the run
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
    channels_last: bool = False  # NHWC activations for convolutional models (faster convolutions on CPU)


def lr_lambda(config: TrainConfig, total_steps: int | None):
    """Linear warmup, then constant or cosine decay to 10% of the peak. ``total_steps`` None: a run with no end,
    where shares of the run mean nothing: only ``warmup_steps``, then the LR held."""
    fraction_warmup = round(config.warmup_fraction * total_steps) if total_steps else 0
    warmup = config.warmup_steps or fraction_warmup

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "constant" or total_steps is None or total_steps <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(module: L.LightningModule, config: TrainConfig, betas=(0.9, 0.99), params=None):
    """AdamW with a per-step LR schedule; used by every stage's ``configure_optimizers``. ``params``: the module's
    trainable parameters when not given."""
    params = [p for p in module.parameters() if p.requires_grad] if params is None else params
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=betas)
    total = module.trainer.estimated_stepping_batches if module._trainer is not None else 1
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, int(total) if math.isfinite(total)
                                                                       else None))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
