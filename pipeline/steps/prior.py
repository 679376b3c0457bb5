"""Step 3: train a prior on the train split's codes (validated, and its NLL measured, on the test split's)."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from stage2_prior.lightning_module import PriorModule
from stage2_prior.persistence import save_prior

from ..config import PipelineConfig
from ..core.code_dataset import codes_digest
from ..core.files import CONFIG_FILE
from ..data_modules import CodeDataModule
from ..run_paths import RunPaths
from ..training import build_trainer, fit
from .fingerprints import digest, model_section
from .prior_model import architecture_for, build_for, check_same_codes, evaluate_nll
from .previews import samples
from .step import Step
from .training_setup import archive_stale_checkpoints, model_dir_complete, train_time


def fingerprint(cfg: PipelineConfig, train_codes_dir: Path) -> str:
    return digest("prior", model_section(cfg.prior), codes_digest(train_codes_dir), cfg.seed)


def is_complete(out: Path) -> bool:
    return model_dir_complete(out, "prior")


def run(cfg: PipelineConfig, codes_root: Path, out: Path) -> Path:
    """Train on ``codes_root/train`` (``codes_root/test`` too when there) and save the prior in ``out``."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    t = cfg.prior.train
    data = CodeDataModule(codes_root, cfg.prior.level, t.batch_size, t.num_workers, cfg.seed)
    data.setup("fit")  # the prior is sized from the codes
    train_codes, test_codes = data.train, data.test
    if test_codes is not None:
        check_same_codes(train_codes, test_codes)
    arch = architecture_for(cfg.prior.architecture(), train_codes)
    preview = samples(train_codes, cfg.logger.images, cfg.sample.controls()) if cfg.logger.name != "csv" else None
    # Before anything is moved or built: Lightning checks the trainer options here.
    trainer = build_trainer(t, out, "prior", cfg.logger, has_validation=test_codes is not None, preview=preview)
    expected = fingerprint(cfg, codes_root / "train")
    archive_stale_checkpoints(out, expected)
    prior = build_for(arch, train_codes)
    module = PriorModule(prior, t)
    train_seconds = fit(trainer, module, data, out)
    if trainer.is_global_zero:
        nll = evaluate_nll(prior, test_codes) if test_codes else None
        save_prior(prior, out, {
            "tokenizer_sha256": train_codes.meta["tokenizer"]["weights_sha256"],
            "codes": {"dir": str(codes_root), "level": "*" if train_codes.stacked else train_codes.level,
                      "grid": train_codes.grid, "codebook_sizes": train_codes.codebook_sizes},
            "test_bits_per_code": nll,
            "provenance": {"fingerprint": expected, "epochs": trainer.current_epoch, "steps": trainer.global_step,
                           **train_time(train_seconds)},
        })
    return out


def step(cfg: PipelineConfig, paths: RunPaths, arch: str) -> Step:
    out = paths.prior(arch)
    return Step(f"prior {arch}", out / CONFIG_FILE, lambda: fingerprint(cfg, paths.codes("train")),
                lambda: is_complete(out), lambda expected: run(cfg, paths.codes_root, out))
