"""Where the two image sets of an FID come from: a split of the configured dataset (``train``, ``test``), a folder
of images, a samples directory (its ``png/``), or a run directory holding one ``samples-ARCH`` folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset

from .core.errors import VqgenError
from .core.images import ImageData
from .data_config import FILE_DATASETS, FILE_DECODE_VERSION
from .datasets import DataConfig, load_split
from .option_checks import SPLITS
from .run_paths import PNG_DIR, RunPaths
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class StreamedImageSet:
    """A streamed split as one side of an FID: read batch by batch when its features are taken, never held whole;
    at most ``limit`` images."""

    def __init__(self, split, limit: Optional[int]):
        self.split, self.limit = split, limit
        self.image_size = split.image_size

    def __len__(self) -> int:
        return min(len(self.split), self.limit) if self.limit else len(self.split)

    @property
    def divisible(self) -> bool:
        """Whether item ranges can be read on their own (tar shards are read in one pass only)."""
        return not isinstance(self.split, IterableDataset)

    def batches(self, batch_size: int, start: int = 0, stop: Optional[int] = None) -> Iterator[torch.Tensor]:
        """Images ``start:stop`` (default all) in batches; batch k holds items ``start + k * batch_size`` on."""
        stop = len(self) if stop is None else min(stop, len(self))
        left = stop - start
        # The whole set reads the split from its start without a range, so tar shards can still be read.
        ranged = (start, stop) != (0, len(self))
        chunks = self.split.batches(batch_size, start=start, stop=stop) if ranged else self.split.batches(batch_size)
        for images, _ in chunks:
            yield images[:left]
            left -= images.shape[0]
            if left <= 0:
                break

    def head(self, n: int) -> torch.Tensor:
        return self.split.head(min(n, len(self)))


def image_batches(images, batch_size: int, limit: Optional[int] = None) -> Iterator[torch.Tensor]:
    """uint8 batches of an image tensor or a streamed image set, the first ``limit`` images at most."""
    if isinstance(images, torch.Tensor):
        yield from images[:limit].split(batch_size)
        return
    left = limit or len(images)
    for batch in images.batches(batch_size):
        yield batch[:left]
        left -= batch.shape[0]
        if left <= 0:
            break


def image_size(images) -> int:
    return images.shape[-1] if isinstance(images, torch.Tensor) else images.image_size


@dataclass
class ImageSource:
    images: Union[torch.Tensor, StreamedImageSet]  # uint8 [N, C, H, W], or a streamed split read in batches
    description: str  # what the protocol prints, e.g. "mnist/test, 10000 images"
    cache_name: str  # key of the cached Inception statistics of these exact images
    folder: Optional[Path] = None  # the folder the images came from; None for a dataset split
    split: Optional[str] = None  # the dataset split; None for a folder


def read_images(folder: Path) -> torch.Tensor:
    """Every PNG/JPEG in ``folder`` (sorted by name) as uint8 ``[N, C, H, W]``."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VqgenError(f"{folder} holds no PNG or JPEG images")
    arrays = []
    for path in files:
        with Image.open(path) as img:
            arrays.append(np.asarray(img.convert("RGB" if img.mode not in ("L", "I;16") else "L")))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise VqgenError(f"images in {folder} differ in size or mode: {sorted(shapes)[:3]}")
    stacked = torch.from_numpy(np.stack(arrays))
    return stacked[:, None] if stacked.ndim == 3 else stacked.permute(0, 3, 1, 2)


def image_folder(path: Path) -> Path:
    """The folder holding the images that ``path`` names: a samples directory's ``png/``, the ``png/`` of a run's
    only ``samples-*`` directory, or ``path`` itself."""
    if not path.is_dir():
        raise VqgenError(f"{path} is not a folder; give a folder of images, a samples directory, a run directory "
                         f"or a dataset split ({', '.join(SPLITS)})")
    if (path / PNG_DIR).is_dir():
        return path / PNG_DIR
    samples = RunPaths(path).sample_sets()
    if len(samples) > 1:
        raise VqgenError(f"{path} holds several sample sets ({', '.join(p.name for p in samples)}); "
                         f"name one of them, for example {samples[0]}")
    return samples[0] / PNG_DIR if samples else path


def load_images(spec: str | Path, data: DataConfig, limit: Optional[int], weights_sha256: str) -> ImageSource:
    """The images ``spec`` names (at most ``limit`` of them), with a cache key that changes whenever they do."""
    weights_key = "".join(c for c in weights_sha256 if c.isalnum())[:12]
    if str(spec) in SPLITS:
        split = load_split(data, str(spec))
        if isinstance(split, ImageData):
            images = split.images[:limit] if limit else split.images
        else:
            images = StreamedImageSet(split, limit)
        # The key names the dataset, not a hash of its pixels: hashing a large split at every run costs more
        # than the cache saves, and a split does not change under the same name, size and count.
        cache_name = (f"vqgen-{data.name}-{spec}-{split.image_size}px-{split.channels}ch-n{len(images)}-"
                      f"{weights_key}")
        if data.name in FILE_DATASETS:  # files: which folder, and how they were decoded
            where = hashlib.sha256(f"{Path(str(data.root)).expanduser().resolve()}".encode()).hexdigest()[:8]
            cache_name += f"-{where}-d{FILE_DECODE_VERSION}"
        return ImageSource(images, f"{data.name}/{spec}, {len(images)} images", cache_name, split=str(spec))
    folder = image_folder(Path(spec))
    images = read_images(folder)
    images = images[:limit] if limit else images
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
    cache_name = f"vqgen-folder-{digest}-n{images.shape[0]}-{weights_key}"
    return ImageSource(images, f"{folder}, {images.shape[0]} images", cache_name, folder=folder)
