"""Atomic file writing, hashing, and the model-directory format (config.json + model.safetensors).

Everything vqgen writes goes to a temporary name first and is renamed into place, so an interrupted
run never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import VqgenError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_error(path: str | Path, err: BaseException) -> VqgenError:
    """A failed write (full disk, read-only or missing folder, ...) as one clear line; the old file is untouched."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
    full = (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in str(err)
    hint = "the disk is full: free some space and rerun" if full else "check the folder and rerun"
    return VqgenError(f"could not write {path} ({reason}); {hint}. Any previous {Path(path).name} there is untouched")


def remove_stale_temporaries(directory: str | Path, name: str | None = None) -> None:
    """Delete the temporaries (``.NAME.*.tmp``) that a killed run left in ``directory``; nothing trusts them."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for stale in directory.glob(f".{name}.*.tmp" if name else ".*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a finished temporary to disk before it is renamed into place (a rename can outlive a crash that the
    data does not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):  # file systems without fsync: nothing to do
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A failed write (say a full disk) leaves the previous ``path`` as it was and raises a VqgenError naming it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise write_error(path, err) from err
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
    except OSError as err:
        raise write_error(path, err) from err
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
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        except SafetensorError as err:  # its I/O errors (a full disk) are not OSErrors
            raise write_error(path, err) from err


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
    old = path.with_name(f".{path.name}.old")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)  # left by a killed run
        if old.exists() and not path.exists():  # a kill between the two renames below: the old one comes back
            os.replace(old, path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise write_error(path, err) from err
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old, path)  # never leave the place empty with the only copy hidden in .old
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_model_dir(directory: str | Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """Write ``config.json`` and ``model.safetensors``; return the sha256 of the weights file."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(directory, err) from err
    remove_stale_temporaries(directory)  # half-written weights of a killed run
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
