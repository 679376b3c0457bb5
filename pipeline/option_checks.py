"""Checks of option values that need neither torch nor a loaded config, so the CLI answers a wrong one at once;
the steps repeat the ones that matter to callers from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .core.errors import VqgenError

SPLITS = ("train", "test")


def check_split(name: str) -> None:
    if name not in SPLITS:
        raise VqgenError(f"--split must be train or test, got {name!r}")


def check_npz_name(npz: Optional[Path]) -> None:
    if npz is not None and Path(npz).suffix != ".npz":
        raise VqgenError(f"--npz wants a file name ending in .npz, got {npz}")


def check_label(label: Optional[str]) -> None:
    if label is not None and label not in ("all", "none") and not label.lstrip("-").isdigit():
        raise VqgenError(f"--label takes a class index, 'all' or 'none', got {label!r}")


def check_exists(path: Optional[Path | str], option: str, also: tuple[str, ...] = ()) -> None:
    """A path given as an input option must exist (``also``: words the option takes instead of a path)."""
    if path is not None and str(path) not in also and not Path(path).exists():
        words = f" (or {', '.join(also)})" if also else ""
        raise VqgenError(f"{option} {path} does not exist; give an existing path{words}")
