"""The callbacks and checkpoint writer of vqgen's Trainer: atomic checkpoints read without unpickling, the random
generators' states and the training clock in every checkpoint, and a stop at the first NaN/Inf loss or weight."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .core.errors import VqgenError
from .core.files import atomic_path

LAST_CHECKPOINT = "last.ckpt"


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


class TrainClock(Callback):
    """Training wall seconds summed over every run of one training, kept in each checkpoint: a run killed and
    resumed reports its whole cost, not its last part (work done after the last checkpoint, and redone, is not
    counted twice). Set-up before the first step is not counted."""

    def __init__(self):
        self.earlier = 0.0  # the runs before this one, from the checkpoint resumed
        self.restored = False  # whether a checkpoint held a clock (those written before it existed do not)
        self.started: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.earlier + (0.0 if self.started is None else time.perf_counter() - self.started)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.earlier = float(state.get("seconds", 0.0))
        self.restored = "seconds" in state


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
