"""What the two training steps (tokenizer, prior) share: model construction errors turned into user errors,
checkpoints of another config set aside before training anew, and the training time in the provenance."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from ..core.errors import VqgenError
from ..core.files import load_model_dir, write_json
from ..training import CHECKPOINT_DIR
from ..training_logs import LOG_DIR
from .fingerprints import recorded_fingerprint

console = Console(stderr=True)


def built(kind: str, build):
    """Build a model, turning the checks its constructor makes (sizes, options) into a clear user error."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        raise VqgenError(f"invalid {kind} config: {err}") from err


def archive_stale_checkpoints(out: Path, expected: str) -> None:
    """Checkpoints left by a run of a different config are moved aside (never deleted) before training anew."""
    ckpt_dir = out / CHECKPOINT_DIR
    marker = ckpt_dir / "fingerprint.json"
    if ckpt_dir.exists():
        if recorded_fingerprint(marker) == expected:
            return
        stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
        while (out / f"{CHECKPOINT_DIR}-stale-{stamp}").exists() or (out / f"{LOG_DIR}-stale-{stamp}").exists():
            n += 1  # two changes within a second: never rename onto an archive that is already there
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        stale = out / f"{CHECKPOINT_DIR}-stale-{stamp}"
        ckpt_dir.rename(stale)
        console.print(f"[yellow]checkpoints in {ckpt_dir} came from another config; moved them to {stale}[/]")
        if (out / LOG_DIR).exists():  # their training logs go with them, every version
            (out / LOG_DIR).rename(out / f"{LOG_DIR}-stale-{stamp}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": expected})


def train_time(seconds: float | None) -> dict:
    """A model's provenance entry for its training's wall seconds; none when they are unknown (see ``fit``)."""
    return {} if seconds is None else {"train_seconds": round(seconds, 1)}


def model_dir_complete(out: Path, kind: str) -> bool:
    """A trained model counts as finished only if it loads and its weights match their recorded sha256."""
    try:
        load_model_dir(out, kind)
    except VqgenError:
        return False
    return True
