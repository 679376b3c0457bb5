"""Fingerprints: a short hash of what a step's output was made from, recorded in the output, so that a rerun can
tell finished work from stale work."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

# Training settings that change how long, where or how visibly training runs, not what a finished model is: the
# run-only train keys and Lightning Trainer options (under train.trainer).
RUN_ONLY_TRAIN_KEYS = {"max_epochs", "max_steps", "devices", "num_nodes", "accelerator", "num_workers",
                       "profiler", "log_every_n_steps", "val_check_interval", "channels_last", "compile",
                       "max_time", "min_epochs", "min_steps", "strategy", "enable_progress_bar", "enable_model_summary",
                       "num_sanity_val_steps", "limit_val_batches", "check_val_every_n_epoch", "detect_anomaly",
                       "checkpoint_every_steps"}
# Trainer options that shape the model, as runs recorded them when they were typed TrainConfig fields: a config
# that leaves them unset (or writes clip 1 for 1.0) keeps the fingerprint of the runs it made then.
MODEL_TRAINER_DEFAULTS = {"accumulate_grad_batches": 1, "gradient_clip_val": None, "precision": "32-true"}


def _train_section(train: dict) -> dict:
    """The ``train:`` dump with its Trainer options beside the optimisation ones (where they once were fields),
    less what only shapes the run."""
    flat = {**{k: v for k, v in train.items() if k != "trainer"}, **MODEL_TRAINER_DEFAULTS, **train["trainer"]}
    if isinstance(flat["gradient_clip_val"], int) and not isinstance(flat["gradient_clip_val"], bool):
        flat["gradient_clip_val"] = float(flat["gradient_clip_val"])
    return {k: v for k, v in flat.items() if k not in RUN_ONLY_TRAIN_KEYS}


def digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def model_section(section) -> dict:
    """A tokenizer: or prior: config section as far as it shapes the trained model."""
    dump = section.model_dump(mode="json")
    dump["train"] = _train_section(dump["train"])
    loss = getattr(section, "loss", None)  # a tokenizer's VQGAN terms: all off is the plain objective, and runs
    if loss is not None and dump["loss"] == type(loss)().model_dump(mode="json"):  # made before they existed match
        del dump["loss"]
    gpt = dump.get("gpt")
    if isinstance(gpt, dict) and gpt.get("activation") == "gelu_new":  # what configs before the option trained
        del gpt["activation"]
    # A prior's other architectures' sub-sections (gpt:, pixelcnn:, maskgit:) do not shape the model trained.
    for arch in ("gpt", "pixelcnn", "maskgit"):
        if isinstance(dump.get(arch), dict) and dump.get("arch") != arch:
            del dump[arch]
    return dump


def recorded_fingerprint(path: Path) -> Optional[str]:
    """The fingerprint a finished step left in ``path`` (a JSON file), or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("fingerprint") or data.get("provenance", {}).get("fingerprint")
