"""Atomic file writing, hashing, and the model-directory format (config.json + model.safetensors).

Everything vqgen writes goes to a temporary name first and is renamed into place, so an interrupted
run never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from .errors import VqgenError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VqgenError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise VqgenError(f"{path} is not valid JSON ({err}); delete it and rerun the step that writes it") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise VqgenError(f"{path} does not exist")
    try:
        return load_file(str(path), device=device)
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise VqgenError(f"{path} is not a readable safetensors file ({err}); rerun the step that writes it") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a whole output directory under a temporary name and swap it into place at the end.

    The previous directory, if any, stays untouched until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_model_dir(directory: str | Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """Write ``config.json`` and ``model.safetensors``; return the sha256 of the weights file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Cloned: tied weights (a GPT's embedding and head) share memory, which safetensors refuses to write.
    tensors = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    save_tensors(directory / WEIGHTS_FILE, tensors)
    digest = sha256_file(directory / WEIGHTS_FILE)
    write_json(directory / CONFIG_FILE, {**config, "weights_sha256": digest})
    return digest


def load_model_dir(directory: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a model directory written by :func:`save_model_dir`, checking its kind and weights hash."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).exists() or not (directory / WEIGHTS_FILE).exists():
        raise VqgenError(
            f"{directory} is not a {kind} directory (it needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
            f"train one first or pass the right path"
        )
    config = read_json(directory / CONFIG_FILE)
    if config.get("kind") != kind:
        raise VqgenError(f"{directory} holds a {config.get('kind')!r}, not a {kind}")
    expected = config.pop("weights_sha256", None)
    actual = sha256_file(directory / WEIGHTS_FILE)
    if expected is not None and expected != actual:
        raise VqgenError(
            f"{directory / WEIGHTS_FILE} does not match the sha256 in its {CONFIG_FILE} "
            f"({actual[:12]} vs {expected[:12]}); the file is corrupt or was replaced: retrain it"
        )
    config.pop("kind")
    return config, load_tensors(directory / WEIGHTS_FILE)


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], directory: str | Path) -> None:
    """``load_state_dict`` that explains a mismatch (a directory from another vqgen version or architecture)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise VqgenError(
            f"the weights in {directory} do not fit the model its {CONFIG_FILE} describes ({first}); it was "
            f"written by another vqgen version or edited by hand: retrain it"
        ) from None
