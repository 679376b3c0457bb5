"""Samples as an .npz in the layout the ADM evaluator suite (openai/guided-diffusion ``evaluations/evaluator.py``)
reads: one array ``arr_0``, uint8 ``[N, H, W, 3]`` (NHWC, RGB; grayscale repeated to 3 channels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core.errors import VqgenError
from .core.files import atomic_path


def to_adm_array(images: torch.Tensor) -> np.ndarray:
    """uint8 ``[N, 1 or 3, H, W]`` -> uint8 ``[N, H, W, 3]``."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise VqgenError(f"an ADM .npz holds uint8 images [N, 1 or 3, H, W], got {images.dtype} "
                         f"{list(images.shape)}")
    return images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()


def write_adm_npz(images: torch.Tensor, path: str | Path) -> Path:
    """Write atomically (a killed run leaves the previous file, never half of one); returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise VqgenError(f"--npz wants a file name ending in .npz, got {path}")
    array = to_adm_array(images)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to the temporary's name
            np.savez(handle, arr_0=array)
    return path
