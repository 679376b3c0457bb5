"""Image datasets by name: small ones held in memory as uint8 tensors ``[N, C, S, S]`` with integer labels, large
image folders and tar shards streamed by DataLoader workers (:mod:`pipeline.streamed_images`).

Names: ``digits`` (scikit-learn's bundled 8x8 handwritten digits, the built-in default: no download),
``mnist``, ``fashion-mnist``, ``cifar10`` (torchvision: downloaded when online, or read from a local root),
``imagefolder`` (``root/<class>/*.png``, or ``root/train/<class>`` and ``root/test/<class>``; streamed when large) and
``webdataset`` (tar shards, always streamed: :mod:`pipeline.webdataset_source`).
The root comes from the config, an option, or the ``VQGEN_DATA_DIR`` environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F

from .core.errors import VqgenError
from .core.images import ImageData
from .data_config import (DATASET_NAMES, IMAGE_SUFFIXES, STREAM_ABOVE_BYTES, DataConfig,  # noqa: F401  (re-exported)
                          resolve_root)
from .image_folder import list_image_folder
from .streamed_images import StreamedFolder, StreamedSplit
from .image_transforms import BAD_IMAGE_ERRORS, bad_image_error, decode_image, pil_mode


def load_split(config: DataConfig, split: Literal["train", "test"]) -> Union[ImageData, StreamedSplit]:
    """One split of the configured dataset, resized to ``image_size`` and converted to ``channels``: in memory,
    or streamed (see ``data.stream``); either gives ``batches``, ``head`` and the split's metadata."""
    if config.name not in LOADERS and config.name != "webdataset":
        raise VqgenError(f"unknown dataset {config.name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if config.name == "webdataset":
        from .webdataset_source import WebDatasetSplit

        if config.stream is False:
            raise VqgenError("data.name webdataset is always streamed; data.stream: false needs an image folder")
        return WebDatasetSplit(config, split)
    if config.name != "imagefolder" and config.stream is True:
        raise VqgenError(f"data.stream: true is for image folders and webdataset shards; {config.name!r} is "
                         f"held in memory (set data.stream to auto or false)")
    if config.name == "imagefolder" and config.stream is not False:
        streamed = StreamedFolder(list_image_folder(config.root, split), split, config.channels, config.image_size,
                                  config.on_bad_image, config.workers)
        if config.stream is True or len(streamed) * streamed.channels * streamed.image_size ** 2 > STREAM_ABOVE_BYTES:
            return streamed
    images, labels, classes, skipped = LOADERS[config.name](config, split)
    if images.shape[0] == 0:
        raise VqgenError(f"dataset {config.name!r} split {split!r} has no images")
    images = _fit(images, config)
    if skipped:
        import sys

        print(f"warning: skipped {skipped} unreadable image file(s) in {config.name}/{split} "
              f"(data.on_bad_image=skip; set it to fail to stop instead)", file=sys.stderr)
    return ImageData(images.contiguous(), labels.long(), classes, config.name, split, skipped)


def _fit(images: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """Convert channels and resize (bilinear, antialiased when shrinking), staying in uint8."""
    if config.channels == 1 and images.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    elif config.channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    size = config.image_size
    if size is not None and images.shape[-1] != size:
        resized = []
        for chunk in images.split(4096):
            out = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False,
                                antialias=size < chunk.shape[-1])
            resized.append(out.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(resized)
    return images


# --- loaders: each returns (uint8 [N, C, H, W], labels [N], class names, skipped count) -----------------------

def _digits(config: DataConfig, split: str):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # [1797, 1, 8, 8] in [0, 1]
    # The default size is 32: digits are upsampled 4x so a tokenizer with 4x downsampling sees an 8x8 grid.
    size = config.image_size or 32
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images * 255).round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(bunch.target)
    # A fixed shuffled split (the bundled data has none): 1497 train, 300 test.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    index = order[300:] if split == "train" else order[:300]
    return images[index], labels[index], [str(i) for i in range(10)], 0


def _torchvision(cls_name: str) -> Callable:
    def load(config: DataConfig, split: str):
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        root = resolve_root(config.root)
        try:
            dataset = cls(root=str(root), train=split == "train", download=config.download)
        except RuntimeError as err:
            raise VqgenError(
                f"dataset {config.name!r} not found under {root} ({err}). Pass its folder with --data-root, "
                f"data.root or VQGEN_DATA_DIR (the folder that torchvision's {cls_name} reads), or allow a download"
            ) from None
        except OSError as err:  # no network during download
            raise VqgenError(
                f"could not download {config.name!r} into {root} ({err}). With no network, put the files there "
                f"yourself and pass the folder with --data-root, data.root or VQGEN_DATA_DIR"
            ) from None
        data = torch.as_tensor(np.asarray(dataset.data))
        images = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)
        return images.to(torch.uint8), torch.as_tensor(np.asarray(dataset.targets)), list(dataset.classes), 0

    return load


def _imagefolder(config: DataConfig, split: str):
    listing = list_image_folder(config.root, split)
    mode, size = pil_mode(config.channels), config.image_size
    images, labels, skipped = [], [], 0
    for path, label in listing.files:
        try:
            array = decode_image(path, mode, size)
        except BAD_IMAGE_ERRORS as err:
            if config.on_bad_image == "fail":
                raise bad_image_error(path, err) from None
            skipped += 1
            continue
        size = size or array.shape[0]  # unset: every image takes the size of the first one
        images.append(array)
        labels.append(label)
    if not images:
        raise VqgenError(f"none of the {len(listing.files)} images under {listing.split_root} could be read")
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return tensor, torch.tensor(labels), listing.classes, skipped


LOADERS: dict[str, Callable] = {
    "digits": _digits,
    "mnist": _torchvision("MNIST"),
    "fashion-mnist": _torchvision("FashionMNIST"),
    "cifar10": _torchvision("CIFAR10"),
    "imagefolder": _imagefolder,
}
