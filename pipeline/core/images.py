"""Image tensors: an image split in memory, the uint8 <-> [-1, 1] conversions, PNG files and grids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .files import atomic_path


@dataclass
class ImageData(Dataset):
    """A split in memory. ``__getitem__`` gives ``(uint8 image [C, S, S], label)``."""

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


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]``, the range the tokenizers work in."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``[-1, 1]`` -> uint8 ``[0, 255]`` (clamped, rounded)."""
    return images.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def save_png(image: torch.Tensor, path: Path) -> None:
    """One uint8 image ``[C, H, W]`` as a PNG, written atomically."""
    array = image.permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(tmp, format="PNG")


def write_image_grid(images: torch.Tensor, path: Path, nrow: int = 8, padding: int = 2) -> None:
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=255)
    save_png(grid if images.shape[1] != 1 else grid[:1], path)
