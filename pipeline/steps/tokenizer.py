"""Step 1: train a tokenizer on the data's train split (validated on its test split)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from stage1_tokenizer.adversarial_module import training_module

from ..config import PipelineConfig
from ..core.errors import VqgenError
from ..core.files import CONFIG_FILE
from ..datasets import load_split
from ..run_paths import RunPaths
from ..training import build_trainer, fit
from .fingerprints import digest, model_section
from .step import Step
from .training_setup import archive_stale_checkpoints, built, loader, model_dir_complete


def fingerprint(cfg: PipelineConfig) -> str:
    return digest("tokenizer", model_section(cfg.tokenizer), cfg.data.model_dump(mode="json"), cfg.seed)


def is_complete(out: Path) -> bool:
    return model_dir_complete(out, "tokenizer")


def run(cfg: PipelineConfig, out: Path) -> Path:
    """Train (resuming from ``out``'s checkpoints when they are of this config) and save the model in ``out``."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    train_data, test_data = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    arch = cfg.tokenizer.architecture().model_copy(
        update={"in_channels": train_data.channels, "image_size": train_data.image_size})
    if arch.image_size % arch.downsample:
        raise VqgenError(f"image size {arch.image_size} is not divisible by tokenizer.downsample {arch.downsample}; "
                         f"set data.image_size to a multiple of it")
    expected = fingerprint(cfg)
    archive_stale_checkpoints(out, expected)
    module = built("tokenizer", lambda: training_module(arch, cfg.tokenizer.train, cfg.tokenizer.loss))
    if cfg.tokenizer.train.compile:
        module.model = torch.compile(module.model)
    trainer = build_trainer(cfg.tokenizer.train, out, manual_optimization=not module.automatic_optimization)
    t = cfg.tokenizer.train
    fit(trainer, module, loader(train_data, t.batch_size, True, t.num_workers, cfg.seed),
        loader(test_data, 256, False, 0, cfg.seed), out)
    if trainer.is_global_zero:
        model = module.evaluation_model()  # the EMA weights when the run keeps an average
        model = model._orig_mod if hasattr(model, "_orig_mod") else model
        model.save(out, provenance={"fingerprint": expected, "data": cfg.data.model_dump(mode="json"),
                                    "epochs": trainer.current_epoch, "steps": trainer.global_step})
    return out


def step(cfg: PipelineConfig, paths: RunPaths) -> Step:
    out = paths.tokenizer
    return Step("tokenizer", out / CONFIG_FILE, lambda: fingerprint(cfg), lambda: is_complete(out),
                lambda expected: run(cfg, out))
