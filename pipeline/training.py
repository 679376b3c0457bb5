"""The Lightning Trainer both stages use: rich progress, CSV (and optionally TensorBoard or W&B) logs, atomic
checkpoints, resume from last.ckpt. Its options come from a stage's ``train.trainer`` mapping, passed as they are."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .core.errors import VqgenError
from .core.files import remove_stale_temporaries
from .core.optim import TRAINER_ALIASES, TrainConfig
from .training_callbacks import (LAST_CHECKPOINT, AtomicCheckpointIO, NonFiniteLossGuard, RandomStateCheckpoint,
                                 TrainClock)
from .training_logs import LoggerConfig
from .training_loggers import EpochImages, make_loggers

CHECKPOINT_DIR = "checkpoints"
# Trainer arguments vqgen sets itself: the output folder, the loggers (logger:), its callbacks and checkpoint writer.
OWNED = {"default_root_dir": "the step's output folder", "logger": "logger.name", "callbacks": "vqgen",
         "plugins": "vqgen"}

# vqgen owns the checkpoint folder (its fingerprint.json, resume, moving stale ones aside), so Lightning's warning
# that the folder is not empty says nothing useful on every fresh or resumed run.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# Lightning's start-up notes (accelerators found, a logging-service tip, "100% of the batches will be used") and a
# deprecation inside Lightning itself say nothing a vqgen user can act on; its warnings stay.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# vqgen's train sampler does resume mid-epoch (the DataModule's state_dict holds its position), which Lightning
# cannot see on the DataLoader.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")


def trainer_options(config: TrainConfig, section: str, has_validation: bool, manual_optimization: bool) -> dict:
    """vqgen's defaults, overridden by ``config.trainer``; what vqgen sets itself cannot be."""
    progress = os.environ.get("VQGEN_NO_PROGRESS") != "1"
    options: dict[str, Any] = {"enable_progress_bar": progress, "enable_model_summary": False,
                               "num_sanity_val_steps": 0, **config.trainer}
    owned = sorted(OWNED.keys() & options.keys())
    if owned:
        raise VqgenError(f"{section}.train.trainer.{owned[0]} cannot be set: {OWNED[owned[0]]} sets it")
    if not has_validation:
        options["limit_val_batches"] = 0
    if manual_optimization:  # such a module clips its gradients itself; Lightning refuses to
        options.pop("gradient_clip_val", None)
    return options


def rejected(section: str, options: dict, err: Exception) -> VqgenError:
    """Lightning's refusal of a Trainer option, naming the config keys its message mentions."""
    text = (str(err).strip() or type(err).__name__).splitlines()[0]
    named = [key for key in options if re.search(rf"\b{re.escape(key)}\b", str(err), re.IGNORECASE)]
    keys = ", ".join(f"{section}.train.{'' if key in TRAINER_ALIASES else 'trainer.'}{key}={options[key]!r}"
                     for key in named) or f"{section}.train.trainer"
    return VqgenError(f"{keys}: Lightning's Trainer refuses it ({text}); the mapping takes lightning.Trainer's "
                      f"arguments as they are")


def build_trainer(config: TrainConfig, out_dir: Path, section: str, logger: LoggerConfig, *,
                  has_validation: bool = True, manual_optimization: bool = False,
                  preview: Optional[Callable[[torch.nn.Module], torch.Tensor]] = None) -> L.Trainer:
    """``section``: tokenizer or prior, for messages. ``preview``: the images of the epoch-end grid."""
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    callbacks: list[Callback] = [
        NonFiniteLossGuard(checkpoint_dir),  # its on_save_checkpoint also vetoes checkpoints of NaN/Inf weights
        RandomStateCheckpoint(),
        TrainClock(),
        # last.ckpt at every epoch end (and where max_steps stops). Not save_last=True with save_top_k=0: in
        # Lightning 2.6 that writes last.ckpt only when training ends, so a killed run would lose every epoch.
        ModelCheckpoint(dirpath=checkpoint_dir, filename=Path(LAST_CHECKPOINT).stem, save_top_k=1, every_n_epochs=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if config.checkpoint_every_steps:  # Lightning takes steps or epochs per ModelCheckpoint: a second one, same file
        callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename=Path(LAST_CHECKPOINT).stem, save_top_k=1,
                                         every_n_train_steps=config.checkpoint_every_steps,
                                         enable_version_counter=False))
    options = trainer_options(config, section, has_validation, manual_optimization)
    if options["enable_progress_bar"]:
        callbacks.append(RichProgressBar(leave=True))
    if preview is not None and logger.name != "csv" and logger.images:
        callbacks.append(EpochImages(f"{section}/images", preview, per_row=logger.images))
    loggers = make_loggers(logger, out_dir, f"{out_dir.parent.name}/{out_dir.name}")
    try:
        return L.Trainer(default_root_dir=str(out_dir), logger=loggers, callbacks=callbacks,
                         plugins=[AtomicCheckpointIO()], **options)
    except (TypeError, ValueError, MisconfigurationException) as err:
        raise rejected(section, options, err) from err


def fit(trainer: L.Trainer, module: L.LightningModule, data: L.LightningDataModule,
        out_dir: Path) -> Optional[float]:
    """Train, resuming from ``checkpoints/last.ckpt`` when an earlier run of the same step left one. Returns the
    training's wall seconds, summed over the runs that resumed it; None when it resumed a checkpoint written before
    checkpoints kept the clock (the earlier runs' time is unknown)."""
    last = out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if trainer.is_global_zero:  # temporaries of a killed run's checkpoint writing are never trusted
        remove_stale_temporaries(out_dir / CHECKPOINT_DIR)
    ckpt_path = str(last) if last.exists() else None
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except SIGTERMException:  # a scheduler's SIGTERM: stopped cleanly, the checkpoints are whole
        raise KeyboardInterrupt from None
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1); report it as the interruption it is
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
    clock = next((c for c in trainer.callbacks if isinstance(c, TrainClock)), None)
    total = None if clock is None or (ckpt_path is not None and not clock.restored) else clock.seconds()
    if trainer.is_global_zero:
        print(summary_line(out_dir.name, trainer, time.perf_counter() - started, total), file=sys.stderr)
    return total


# The figures a finished training is summed up by: (label, format, logged names in order of preference); a run
# that never validated is summed up by its last training figures.
SUMMARY_METRICS = (("PSNR", "{:.2f} dB", ("val/psnr",)),
                   ("perplexity", "{:.1f}", ("val/perplexity", "epoch/perplexity", "train/perplexity")),
                   ("codebook usage", "{:.0%}", ("val/usage", "epoch/usage")),
                   ("test NLL", "{:.3f} bits/code", ("val/bits_per_code",)),
                   ("train NLL", "{:.3f} bits/code", ("train/bits_per_code",)))


def summary_line(name: str, trainer: L.Trainer, seconds: float, total: Optional[float] = None) -> str:
    """One line at the end of training: its length and the last figures (validation ones where there are).
    ``seconds``: this run; ``total``: the training's, over every run that resumed it, when it differs."""
    metrics = trainer.callback_metrics
    figures = []
    for label, form, keys in SUMMARY_METRICS:
        key = next((key for key in keys if key in metrics), None)
        if key is not None and not (label == "train NLL" and "val/bits_per_code" in metrics):
            figures.append(f"{label} {form.format(float(metrics[key]))}")
        elif key is None and (levels := _per_level(metrics, keys)):
            figures.append(f"{label} " + " / ".join(f"{form.format(float(value))} ({level})"
                                                    for level, value in levels.items()))
    resumed = f" ({total:.0f} s with the earlier runs it resumed)" if total is not None and total > seconds + 1 else ""
    return (f"{name}: {trainer.current_epoch} epoch(s), {trainer.global_step} steps in {seconds:.0f} s{resumed}"
            + (f"; {', '.join(figures)}" if figures else ""))


def _per_level(metrics, keys: tuple[str, ...]) -> dict[str, object]:
    """A multi-level tokenizer (VQ-VAE-2) logs ``val/top/usage`` where a single level logs ``val/usage``: the
    figures of the first key's section that has any, by level."""
    for key in keys:
        section, metric = key.split("/")
        levels = {parts[1]: value for name, value in metrics.items()
                  if len(parts := name.split("/")) == 3 and parts[0] == section and parts[2] == metric}
        if levels:
            return levels
    return {}
