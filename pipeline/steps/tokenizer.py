"""Step 1: train a tokenizer on the data's train split (validated on its test split)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from stage1_tokenizer.adversarial_module import training_module

from ..config import PipelineConfig
from ..core.errors import VqgenError
from ..core.files import CONFIG_FILE
from ..data_modules import ImageDataModule
from ..run_paths import RunPaths
from ..training import build_trainer, fit
from .fingerprints import digest, model_section
from .previews import reconstructions
from .step import Step
from .training_setup import archive_stale_checkpoints, built, model_dir_complete, train_time


def fingerprint(cfg: PipelineConfig) -> str:
    return digest("tokenizer", model_section(cfg.tokenizer), cfg.data.fingerprint_dump(), cfg.seed)


def is_complete(out: Path) -> bool:
    return model_dir_complete(out, "tokenizer")


def run(cfg: PipelineConfig, out: Path) -> Path:
    """Train (resuming from ``out``'s checkpoints when they are of this config) and save the model in ``out``."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    t = cfg.tokenizer.train
    data = ImageDataModule(cfg.data, t.batch_size, t.num_workers, cfg.seed)
    data.setup("fit")  # the model is sized from the images
    arch = cfg.tokenizer.architecture().model_copy(
        update={"in_channels": data.train.channels, "image_size": data.train.image_size})
    if arch.image_size % arch.downsample:
        raise VqgenError(f"image size {arch.image_size} is not divisible by tokenizer.downsample {arch.downsample}; "
                         f"set data.image_size to a multiple of it")
    # Before anything is moved or built: Lightning checks the trainer options here.
    trainer = build_trainer(t, out, "tokenizer", cfg.logger, manual_optimization=cfg.tokenizer.loss.adversarial,
                            preview=reconstructions(data.preview(cfg.logger.images)))
    expected = fingerprint(cfg)
    archive_stale_checkpoints(out, expected)
    module = built("tokenizer", lambda: training_module(arch, t, cfg.tokenizer.loss))
    if t.compile:
        module.model = torch.compile(module.model)
    train_seconds = fit(trainer, module, data, out)
    if trainer.is_global_zero:
        model = module.evaluation_model()  # the EMA weights when the run keeps an average
        model = model._orig_mod if hasattr(model, "_orig_mod") else model
        model.save(out, provenance={"fingerprint": expected, "data": cfg.data.model_dump(mode="json"),
                                    "epochs": trainer.current_epoch, "steps": trainer.global_step,
                                    **train_time(train_seconds)})
    return out


def step(cfg: PipelineConfig, paths: RunPaths) -> Step:
    out = paths.tokenizer
    return Step("tokenizer", out / CONFIG_FILE, lambda: fingerprint(cfg), lambda: is_complete(out),
                lambda expected: run(cfg, out))
