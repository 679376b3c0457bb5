"""Image splits read lazily, batch by batch, by DataLoader workers: memory stays flat however many images a split
holds. :class:`StreamedSplit` is what every streamed split shares with the in-memory ``ImageData`` (its metadata,
``batches`` and ``head``); :class:`StreamedFolder` streams an image folder."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from .core.errors import VqgenError
from .image_folder import FolderListing, first_readable_size
from .image_transforms import BAD_IMAGE_ERRORS, TrainTransforms, bad_image_error, decode_image, item_generator, pil_mode


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stacks the readable ``(image, label)`` items; ``None`` (an unreadable file, skipped) is counted instead."""
    readable = [item for item in items if item is not None]
    if not readable:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), len(items)
    images = torch.stack([image for image, _ in readable])
    labels = torch.tensor([label for _, label in readable], dtype=torch.long)
    return images, labels, len(items) - len(readable)


def worker_error(err: VqgenError) -> VqgenError:
    """A worker's VqgenError arrives wrapped in its traceback; keep only the message, as errors are one line."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else str(err)
    return VqgenError(last.split("VqgenError: ", 1)[-1])


class StreamedSplit:
    """Metadata and batch iteration of a streamed split; subclasses are torch Datasets of ``(uint8 [C, S, S],
    label)`` items that give ``None`` for an unreadable image under ``data.on_bad_image=skip``."""

    name: str
    split: str
    classes: list[str]
    channels: int
    image_size: int
    skipped: int = 0
    workers: Optional[int] = None  # None: default_workers()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def batches(self, batch_size: int, num_workers: Optional[int] = None, start: int = 0,
                stop: Optional[int] = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(uint8 images [B, C, S, S], labels [B])`` of items ``start:stop`` in a fixed order, read by worker
        processes; skipped files are counted in ``skipped`` and reported once the pass is over."""
        workers = num_workers if num_workers is not None else (self.workers if self.workers is not None
                                                               else default_workers())
        if isinstance(self, IterableDataset):  # workers take turns over their own shards: one keeps shard order
            workers = min(workers, 1)
        source = self
        if (start, stop) != (0, None) and (start, stop) != (0, len(self)):
            if isinstance(self, IterableDataset):  # tar shards are read in one pass, never from an index
                raise VqgenError(f"{self.name}/{self.split} is read in one pass; it cannot be cut into ranges "
                                 f"(tokenize it with one process and one codes file)")
            source = Subset(self, range(start, len(self) if stop is None else stop))
        loader = DataLoader(source, batch_size=batch_size, num_workers=workers, collate_fn=collate_readable)
        skipped = 0
        try:
            for images, labels, bad in loader:
                skipped += bad
                if labels.numel():
                    yield images, labels
        except VqgenError as err:
            raise worker_error(err) from None
        self.skipped = skipped
        if skipped:
            print(f"warning: skipped {skipped} unreadable image file(s) in {self.name}/{self.split} "
                  f"(data.on_bad_image=skip; set it to fail to stop instead)", file=sys.stderr)

    def spread(self, n: int) -> torch.Tensor:
        """The first ``n`` images: a streamed split is read in order, not picked from (see ``ImageData.spread``)."""
        return self.head(n)

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` readable images (uint8), read in the main process."""
        chunks, count = [torch.zeros(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)], 0
        if n <= 0:
            return chunks[0]
        for images, _ in self.batches(min(n, 64), num_workers=0):
            chunks.append(images[: n - count])
            count += chunks[-1].shape[0]
            if count >= n:
                break
        return torch.cat(chunks)


class PackedPaths:
    """File paths as one byte buffer and offsets: no Python object per file, so forked DataLoader workers share
    its pages instead of copying a list of millions of objects whose reference counts they touch."""

    def __init__(self, paths: list[Path]):
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        return Path(os.fsdecode(self.buffer[self.offsets[index] : self.offsets[index + 1]].tobytes()))


class StreamedFolder(StreamedSplit, Dataset):
    """An image folder split, one file decoded per item. Evaluation: short side resized, centre cropped. A
    training copy (:meth:`for_training`) adds the random crop and flip, drawn from (seed, epoch, index), and
    replaces an unreadable file by the next readable one so that batches keep their size."""

    def __init__(self, listing: FolderListing, split: str, channels: Optional[int], image_size: Optional[int],
                 on_bad_image: str = "skip", workers: Optional[int] = None):
        self.name, self.split, self.classes = "imagefolder", split, listing.classes
        self.paths = PackedPaths([path for path, _ in listing.files])
        self.labels = np.array([label for _, label in listing.files], dtype=np.int64)
        self.mode, self.channels = pil_mode(channels), 1 if channels == 1 else 3
        self.on_bad_image, self.workers = on_bad_image, workers
        self.image_size = image_size or first_readable_size((p for p, _ in listing.files), channels, on_bad_image,
                                                            listing.split_root)
        self.transforms: Optional[TrainTransforms] = None
        self.seed = 0

    def for_training(self, transforms: TrainTransforms, seed: int) -> "StreamedFolder":
        twin = copy.copy(self)
        twin.transforms, twin.seed = transforms, seed
        return twin

    @property
    def takes_epoch(self) -> bool:  # the sampler then hands (index, epoch) keys, for the per-item generator
        return self.transforms is not None and self.transforms.active

    def __len__(self) -> int:
        return len(self.labels)

    def _read(self, index: int, size: int) -> Optional[torch.Tensor]:
        path = self.paths[index]
        try:
            array = decode_image(path, self.mode, size)
        except BAD_IMAGE_ERRORS as err:
            if self.on_bad_image == "fail":
                raise bad_image_error(path, err) from None
            return None
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (int(key), None)
        if self.transforms is None:
            image = self._read(index, self.image_size)
            return None if image is None else (image, int(self.labels[index]))
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            image = self._read(candidate, self.transforms.read_size)
            if image is not None:
                # Without an epoch (DDP swaps in its own sampler) the worker's seeded generator draws instead.
                generator = item_generator(self.seed, epoch, candidate) if epoch is not None else None
                return self.transforms(image, generator), int(self.labels[candidate])
        raise VqgenError(f"none of the {len(self)} images of {self.name}/{self.split} could be read")
