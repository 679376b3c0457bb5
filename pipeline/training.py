"""The Lightning Trainer both stages use: rich progress, CSV logs, atomic checkpoints, resume from last.ckpt."""

from __future__ import annotations

import csv
import os
import random
import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import RandomSampler

from .core.errors import VqgenError
from .core.files import atomic_path, remove_stale_temporaries
from .core.optim import TrainConfig

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOG_DIR = "logs"  # Lightning CSV logs: LOG_DIR/version_0/metrics.csv, appended to on resume

# vqgen owns the checkpoint folder (its fingerprint.json, resume, moving stale ones aside), so Lightning's warning
# that the folder is not empty says nothing useful on every fresh or resumed run.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# Lightning's start-up notes (accelerators found, a logging-service tip, "100% of the batches will be used") and a
# deprecation inside Lightning itself say nothing a vqgen user can act on; its warnings stay.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename: a kill never leaves half a file.

    Reading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` whatever Lightning's or torch's
    default (checkpoints hold tensors and plain containers only; hyperparameters are plain dicts)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        try:
            with atomic_path(path) as tmp:
                torch.save(checkpoint, tmp)
        except RuntimeError as err:  # torch's zip writer reports a full disk as "PytorchStreamWriter failed ..."
            raise VqgenError(f"could not write the checkpoint {path} ({str(err).splitlines()[0]}); is the disk "
                             f"full? The previous checkpoint there is untouched") from err

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # a foreign or damaged file: say which, never a traceback
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise VqgenError(f"cannot resume from {path} ({first}): it is damaged or holds more than tensors and "
                             f"plain values. Move it aside to start this step afresh") from err


class RandomStateCheckpoint(Callback):
    """Keeps the random generators' states (torch, CUDA, numpy, Python) in every checkpoint and restores them on
    resume, so that a run resumed from an end-of-epoch checkpoint draws the same dropout masks, label drops and
    codebook restarts as an uninterrupted one. Stored as tensors and plain values (``weights_only`` loading)."""

    def state_dict(self) -> dict[str, Any]:
        version, py_state, gauss = random.getstate()
        _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": torch.tensor(py_state, dtype=torch.int64),
                 "python_version": version, "python_gauss": gauss,
                 "numpy": torch.from_numpy(np_keys.astype(np.int64)), "numpy_pos": int(np_pos),
                 "numpy_has_gauss": int(np_has_gauss), "numpy_gauss": float(np_gauss)}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "torch" not in state:
            return
        torch.set_rng_state(state["torch"])
        random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
        np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                             state["numpy_has_gauss"], state["numpy_gauss"]))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


class EpochRandomSampler(RandomSampler):
    """Shuffles with a permutation that depends on (seed, epoch) alone, so a resumed run sees the batches an
    uninterrupted one would (a plain RandomSampler continues its generator, which a new process restarts).
    Lightning calls ``set_epoch``; under DDP it swaps this for a DistributedSampler, which is seeded the same way."""

    def __init__(self, data_source, seed: int):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(hash((self.seed, self.epoch)) & 0x7FFF_FFFF_FFFF_FFFF)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class _AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends to it instead."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            # A run killed while the log was being written can leave rows longer than the header; keep what parses.
            header, rows = self._read_rows()
            self.metrics_keys = header
            self._write_rows(header, rows)

    def _read_rows(self) -> tuple[list[str], list[dict]]:
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
            return list(reader.fieldnames or []), rows

    def _write_rows(self, fieldnames: list[str], rows: list[dict]) -> None:
        with atomic_path(self.metrics_file_path) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """Lightning rewrites the log in place when a new metric appears; here it is atomic and tolerant."""
        self._write_rows(fieldnames, self._read_rows()[1])


class ResumableCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


class NonFiniteLossGuard(Callback):
    """Stop at the first NaN/Inf loss, naming the step and the last good checkpoint."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir

    def _where(self) -> str:
        last = self.checkpoint_dir / LAST_CHECKPOINT
        return f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise VqgenError(
                f"the loss became {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                f"{self._where()}. Lower the learning rate or enable gradient clipping (train.gradient_clip_val)."
            )

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # The last batch of an epoch can turn the weights to NaN with a finite loss: never save those as "good".
        bad = [name for name, value in checkpoint["state_dict"].items()
               if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
        if bad:
            raise VqgenError(
                f"the weights became NaN/Inf by step {trainer.global_step} (epoch {trainer.current_epoch}; "
                f"{bad[0]}{' and others' if len(bad) > 1 else ''}); not saving them, {self._where()}. "
                f"Lower the learning rate or enable gradient clipping (train.gradient_clip_val)."
            )


def build_trainer(config: TrainConfig, out_dir: Path, has_validation: bool = True,
                  manual_optimization: bool = False) -> L.Trainer:
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    callbacks: list[Callback] = [
        NonFiniteLossGuard(checkpoint_dir),  # its on_save_checkpoint also vetoes checkpoints of NaN/Inf weights
        RandomStateCheckpoint(),
        # last.ckpt at every epoch end (and where max_steps stops). Not save_last=True with save_top_k=0: in
        # Lightning 2.6 that writes last.ckpt only when training ends, so a killed run would lose every epoch.
        ModelCheckpoint(dirpath=checkpoint_dir, filename=Path(LAST_CHECKPOINT).stem, save_top_k=1, every_n_epochs=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
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
        gradient_clip_val=None if manual_optimization else config.gradient_clip_val,  # such a module clips itself
        log_every_n_steps=config.log_every_n_steps,
        # Flushed at every logging step, so a kill loses no row of the work its checkpoint kept.
        logger=ResumableCSVLogger(str(out_dir), name=LOG_DIR, version=0, flush_logs_every_n_steps=1),
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
    if trainer.is_global_zero:  # temporaries of a killed run (checkpoint, rewritten CSV log) are never trusted
        remove_stale_temporaries(out_dir / CHECKPOINT_DIR)
        remove_stale_temporaries(out_dir / LOG_DIR / "version_0")
    ckpt_path = str(last) if last.exists() else None
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    except SIGTERMException:  # a scheduler's SIGTERM: stopped cleanly, the checkpoints are whole
        raise KeyboardInterrupt from None
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1); report it as the interruption it is
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
