"""How one image file becomes a model input: decoded, converted to the configured channels, its short side resized
and the centre cropped square (evaluation); for training optionally a random crop and a horizontal flip.

The in-memory and the streamed loaders both go through :func:`decode_image`, so a folder gives the same pixels
whichever way it is read."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .core.errors import VqgenError

# What PIL raises on truncated, empty, non-image or oversized files (and folders named like images).
BAD_IMAGE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError)


def pil_mode(channels: Optional[int]) -> str:
    return "L" if channels == 1 else "RGB"  # RGB unless asked for grayscale, as the in-memory loader always did


def fit_image(img: Image.Image, mode: str, size: Optional[int]) -> np.ndarray:
    """``img`` as uint8 ``[S, S, C]``: converted to ``mode``, the short side resized to ``size`` (bicubic) and the
    centre cropped square. ``size`` None keeps the short side."""
    img = img.convert(mode)  # grayscale, RGBA, palette and 16-bit images all become `mode`
    size = size or min(img.size)
    width, height = img.size
    if width == height != size:
        img = img.resize((size, size), Image.BICUBIC)
    elif width != height:
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        left, top = (new_w - size) / 2, (new_h - size) / 2
        # resize's box crops in source coordinates, so the crop costs no second resample.
        box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
        img = img.resize((size, size), Image.BICUBIC, box=box)
    array = np.array(img, dtype=np.uint8)  # a writable copy: torch refuses to share a read-only buffer
    return array if array.ndim == 3 else array[:, :, None]


def decode_image(source: Union[Path, bytes], mode: str, size: Optional[int]) -> np.ndarray:
    """A file (or its bytes, from a tar shard) through :func:`fit_image`; raises one of ``BAD_IMAGE_ERRORS``."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        return fit_image(img, mode, size)


def bad_image_error(name: object, err: Exception) -> VqgenError:
    return VqgenError(f"cannot read image {name}: {err} (set data.on_bad_image=skip to skip such files)")


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends on (seed, epoch, index) alone, so a training image gets the same random crop and
    flip whichever worker reads it and whether or not the run was resumed."""
    key = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(key, "little") & 0x7FFF_FFFF_FFFF_FFFF)


class TrainTransforms:
    """Random crop and horizontal flip of training images. ``crop_scale`` > 1: the image is read (or resized) at
    ``round(size * crop_scale)`` and a random ``size`` square is cut from it; 1 keeps the whole image."""

    def __init__(self, size: int, crop_scale: float = 1.0, hflip: bool = False):
        self.size, self.hflip = size, hflip
        self.read_size = max(size, round(size * crop_scale))

    @property
    def active(self) -> bool:
        return self.hflip or self.read_size > self.size

    def __call__(self, image: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """uint8 ``[C, S, S]`` (S the size or the read size) -> uint8 ``[C, size, size]``."""
        if image.shape[-1] != self.read_size:  # an in-memory image at the model size: scaled up to crop from
            image = F.interpolate(image[None].float(), size=(self.read_size, self.read_size), mode="bilinear",
                                  align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        margin = self.read_size - self.size
        if margin:
            top, left = torch.randint(0, margin + 1, (2,), generator=generator).tolist()
            image = image[:, top : top + self.size, left : left + self.size]
        if self.hflip and torch.rand((), generator=generator) < 0.5:
            image = image.flip(-1)
        return image.contiguous()
