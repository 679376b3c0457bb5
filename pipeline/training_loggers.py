"""The loggers a training step writes to (``logger:``) and the image grid that the image-capable ones show at each
epoch end. A run of a step opens new log versions; nothing is appended to an earlier run's files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from .core.errors import VqgenError
from .core.images import image_grid
from .training_logs import LOG_DIR, LoggerConfig

# logger.name: (the package it needs, the dependency group that installs it)
OPTIONAL_LOGGERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


def make_loggers(config: LoggerConfig, out_dir: Path, run_name: str) -> list[Logger]:
    """The CSV log (flushed at every logging step, so a kill loses no row of the work its checkpoint kept), and
    the logger ``config`` names besides it, under ``out_dir/logs``."""
    loggers: list[Logger] = [CSVLogger(str(out_dir), name=LOG_DIR, flush_logs_every_n_steps=1)]
    if config.name in OPTIONAL_LOGGERS:
        package, group = OPTIONAL_LOGGERS[config.name]
        if importlib.util.find_spec(package) is None:
            raise VqgenError(f"logger.name is {config.name}, but the {package} package is not installed: "
                             f"`uv sync --group {group}` (an optional extra), or set logger.name=csv")
    if config.name == "tensorboard":
        loggers.append(TensorBoardLogger(str(out_dir / LOG_DIR), name="tensorboard", default_hp_metric=False))
    elif config.name == "wandb":
        loggers.append(WandbLogger(name=run_name, project=config.wandb_project, save_dir=str(out_dir / LOG_DIR),
                                   offline=config.wandb_offline))
    return loggers


def shows_images(logger: Logger) -> bool:
    return isinstance(logger, (TensorBoardLogger, WandbLogger))


def log_image(logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
    """One uint8 image ``[C, H, W]``."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, grid, step)
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[grid.permute(1, 2, 0).numpy()], step=step)


class EpochImages(Callback):
    """At each epoch end, ``make(module)``'s uint8 images ``[N, C, H, W]`` as one grid, ``per_row`` a row, to the
    loggers that show images (the CSV log cannot). Made in eval mode, without gradients, on the first process."""

    def __init__(self, tag: str, make: Callable[[torch.nn.Module], torch.Tensor], per_row: int):
        self.tag, self.make, self.per_row = tag, make, per_row

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        loggers = [logger for logger in trainer.loggers if shows_images(logger)]
        if not loggers or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                images = self.make(pl_module).cpu()
        finally:
            pl_module.train(was_training)
        grid = image_grid(images, nrow=self.per_row)
        for logger in loggers:
            log_image(logger, self.tag, grid, trainer.global_step)
