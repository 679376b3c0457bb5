"""Image tensors: an image split in memory, the uint8 <-> [-1, 1] conversions, checked user images, PNG files and
grids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import VqgenError
from .files import atomic_path


@dataclass
class ImageData(Dataset):
    """A split in memory. ``__getitem__`` gives ``(uint8 image [C, S, S], label)``. Large image folders are
    streamed instead (``pipeline.streamed_images``), with the same metadata, ``batches`` and ``head``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str
    skipped: int = 0  # unreadable files left out (imagefolder)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def batches(self, batch_size: int, num_workers: int = 0, start: int = 0, stop: Optional[int] = None):
        """``(uint8 images [B, C, S, S], labels [B])`` slices of items ``start:stop`` in order; a streamed split
        gives the same from its DataLoader workers (``num_workers`` is for that; slices need none)."""
        stop = len(self) if stop is None else stop
        for first in range(start, stop, batch_size):
            end = min(stop, first + batch_size)
            yield self.images[first:end], self.labels[first:end]

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` images."""
        return self.images[:n]

    def spread(self, n: int) -> torch.Tensor:
        """``n`` images evenly spaced over the split, so a grid of a class-sorted folder shows every class."""
        return self.images[torch.linspace(0, len(self) - 1, min(n, len(self))).round().long()]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]``, the range the tokenizers work in."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``[-1, 1]`` -> uint8 ``[0, 255]`` (clamped, rounded)."""
    return images.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def checked_images(images, channels: int, size: int) -> torch.Tensor:
    """Images from a user (a notebook) -> floats in [-1, 1]: uint8 ``[B, C, S, S]`` in 0..255, or floats in [0, 1].

    Anything else is refused with what was wrong and how to convert it: [-1, 1] floats in particular would be read
    as much darker images without an error, and HWC arrays as the wrong shape."""
    expected = f"[B, {channels}, {size}, {size}]"
    if not isinstance(images, torch.Tensor):
        if type(images).__module__ != "numpy":
            raise VqgenError(f"images must be a torch.Tensor (or numpy array) {expected}, got {type(images).__name__}")
        images = torch.as_tensor(images)
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[1:] != (channels, size, size):
        hint = ""
        if len(shape) == 3:
            hint = " (one image: images[None])"
        elif len(shape) == 4 and shape[1:] == (size, size, channels):
            hint = " (channels go first: images.permute(0, 3, 1, 2))"
        raise VqgenError(f"images must have shape {expected}, got {list(shape)}{hint}")
    if shape[0] == 0:
        raise VqgenError("images is an empty batch (shape [0, ...]); pass at least one image")
    if images.dtype == torch.uint8:
        return to_float(images)
    if not images.is_floating_point():
        raise VqgenError(f"images must be uint8 (0..255) or floats in [0, 1], got {images.dtype}; "
                         f"convert with images.to(torch.uint8) or images.float() / 255")
    if not torch.isfinite(images).all():
        raise VqgenError("images hold NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = ("they look like [-1, 1]: pass (images + 1) / 2" if low >= -1 and high <= 1 else
                "they look like 0..255: pass images / 255 or images.to(torch.uint8)" if low >= 0 and high <= 255 else
                "rescale them to [0, 1]")
        raise VqgenError(f"float images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]; {hint}")
    return images.float() * 2 - 1


def save_png(image: torch.Tensor, path: Path) -> None:
    """One uint8 image ``[C, H, W]`` as a PNG, written atomically."""
    array = image.permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(tmp, format="PNG")


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """uint8 images ``[N, C, H, W]`` -> one uint8 RGB image ``[3, H', W']``, ``nrow`` a row, on a white ground."""
    from torchvision.utils import make_grid

    return make_grid(images, nrow=nrow, padding=padding, pad_value=255)


def write_image_grid(images: torch.Tensor, path: Path, nrow: int = 8, padding: int = 2) -> None:
    grid = image_grid(images, nrow, padding)
    save_png(grid if images.shape[1] != 1 else grid[:1], path)
