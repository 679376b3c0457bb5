"""Fingerprints: a short hash of what a step's output was made from, recorded in the output, so that a rerun can
tell finished work from stale work."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

# Trainer settings that change how long or where training runs, not what a finished model is.
RUN_ONLY_TRAIN_KEYS = {"max_epochs", "max_steps", "devices", "num_nodes", "accelerator", "num_workers",
                       "profiler", "log_every_n_steps", "val_check_interval", "channels_last", "compile"}


def digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def model_section(section) -> dict:
    """A tokenizer: or prior: config section as far as it shapes the trained model."""
    dump = section.model_dump(mode="json")
    dump["train"] = {k: v for k, v in dump["train"].items() if k not in RUN_ONLY_TRAIN_KEYS}
    loss = getattr(section, "loss", None)  # a tokenizer's VQGAN terms: all off is the plain objective, and runs
    if loss is not None and dump["loss"] == type(loss)().model_dump(mode="json"):  # made before they existed match
        del dump["loss"]
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
