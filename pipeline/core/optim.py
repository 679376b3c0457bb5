"""Training options and the optimizer with its learning-rate schedule, which both stages' Lightning modules use."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

if TYPE_CHECKING:  # importing Lightning costs seconds; a config check must not pay for it
    import lightning as L


# Lightning Trainer options that were TrainConfig fields before the ``trainer:`` mapping. Configs, saved runs and
# the CLI still give them beside the optimisation options (tokenizer.train.max_epochs, --max-epochs); they are
# moved into the mapping here, and only here.
TRAINER_ALIASES = ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "precision",
                   "accelerator", "devices", "num_nodes", "log_every_n_steps", "val_check_interval", "profiler")
# Where vqgen's Trainer departs from Lightning's defaults (short runs on one device, a log row every 10 steps).
TRAINER_DEFAULTS = {"max_epochs": 10, "devices": 1, "log_every_n_steps": 10}


def with_trainer_aliases(train: Any) -> Any:
    """A ``train:`` mapping with its short Trainer keys moved into ``trainer`` (overriding what it held there)."""
    if not isinstance(train, dict) or not isinstance(train.get("trainer", {}), dict):
        return train  # not a mapping: the validation names what is wrong
    moved = {key: train[key] for key in TRAINER_ALIASES if key in train}
    if not moved:
        return train
    rest = {key: value for key, value in train.items() if key not in moved}
    return {**rest, "trainer": {**rest.get("trainer", {}), **moved}}


class TrainConfig(BaseModel):
    """The optimisation options; Lightning's Trainer options go in ``trainer``, passed to ``L.Trainer`` as they are
    (Lightning checks them when a step builds its Trainer)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: PositiveInt = 128
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    warmup_fraction: float = Field(0.0, ge=0, lt=1)  # used when warmup_steps is 0: warm-up as a share of the run
    lr_schedule: Literal["constant", "cosine"] = "constant"
    num_workers: int = Field(0, ge=0)  # data loader processes
    compile: bool = False  # torch.compile the model before training
    channels_last: bool = False  # NHWC activations for convolutional models (faster convolutions on CPU)
    # A resumable checkpoint every N optimizer steps besides each epoch end (long epochs lose at most N steps).
    checkpoint_every_steps: Optional[PositiveInt] = None
    trainer: dict[str, Any] = Field(default_factory=lambda: dict(TRAINER_DEFAULTS))

    @model_validator(mode="before")
    @classmethod
    def _trainer_options(cls, data: Any) -> Any:
        data = with_trainer_aliases(data)
        if isinstance(data, dict) and isinstance(data.get("trainer", {}), dict):
            data = {**data, "trainer": {**TRAINER_DEFAULTS, **data.get("trainer", {})}}
        return data


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
    import torch  # here, not at the top: configs import this module to be checked before torch loads

    params = [p for p in module.parameters() if p.requires_grad] if params is None else params
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=betas)
    total = module.trainer.estimated_stepping_batches if module._trainer is not None else 1
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, int(total) if math.isfinite(total)
                                                                       else None))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
