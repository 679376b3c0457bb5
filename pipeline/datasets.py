"""Image datasets by name, held in memory as uint8 tensors ``[N, C, S, S]`` with integer labels.

Names: ``digits`` (scikit-learn's bundled 8x8 handwritten digits, the built-in default: no download),
``mnist``, ``fashion-mnist``, ``cifar10`` (torchvision: downloaded when online, or read from a local root),
and ``imagefolder`` (``root/<class>/*.png``, or ``root/train/<class>`` and ``root/test/<class>``).
The root comes from the config, an option, or the ``VQGEN_DATA_DIR`` environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .core.errors import VqgenError
from .core.images import ImageData
from .data_config import DATASET_NAMES, IMAGE_SUFFIXES, DataConfig, resolve_root  # noqa: F401  (re-exported)

def load_split(config: DataConfig, split: Literal["train", "test"]) -> ImageData:
    """Load one split of the configured dataset, resized to ``image_size`` and converted to ``channels``."""
    if config.name not in LOADERS:
        raise VqgenError(f"unknown dataset {config.name!r}; choose one of: {', '.join(DATASET_NAMES)}")
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
    from PIL import Image, UnidentifiedImageError

    if not config.root:
        raise VqgenError("dataset 'imagefolder' needs a root: pass --data-root or set data.root")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise VqgenError(f"image folder {root} does not exist")
    split_root = root / split if (root / "train").is_dir() else root
    if not split_root.is_dir():
        raise VqgenError(f"image folder {root} has a train/ folder but no {split}/ folder")
    # With train/ and test/, both splits take their classes from the union, so a label means the same in each.
    class_roots = [root / "train", root / "test"] if split_root is not root else [root]
    classes = sorted({p.name for folder in class_roots if folder.is_dir() for p in folder.iterdir() if p.is_dir()})
    if not classes:
        raise VqgenError(f"{split_root} has no class sub-folders; put images in {split_root}/<class>/")
    files = [
        (path, label)
        for label, name in enumerate(classes)
        if (split_root / name).is_dir()
        for path in sorted((split_root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise VqgenError(f"{split_root} has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if split_root is root:  # no split folders: a fixed 90/10 split
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0)).tolist()
        cut = max(1, len(files) // 10)
        files = [files[i] for i in (order[cut:] if split == "train" else order[:cut])]
        if not files:
            raise VqgenError(f"{root} holds only {len(order)} image(s): too few to split 90/10 into train and test; "
                             f"add images or make train/ and test/ folders")
    mode = "L" if config.channels == 1 else "RGB"
    size = config.image_size
    images, labels, skipped = [], [], 0
    for path, label in files:
        try:
            with Image.open(path) as img:
                img = img.convert(mode)  # grayscale, RGBA and palette images all become `mode`
                if size is None:
                    size = img.width
                if img.size != (size, size):
                    img = img.resize((size, size), Image.BICUBIC)
                array = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:
            if config.on_bad_image == "fail":
                raise VqgenError(f"cannot read image {path}: {err} (set data.on_bad_image=skip to skip such files)") from None
            skipped += 1
            continue
        images.append(array if array.ndim == 3 else array[:, :, None])
        labels.append(label)
    if not images:
        raise VqgenError(f"none of the {len(files)} images under {split_root} could be read")
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return tensor, torch.tensor(labels), classes, skipped


LOADERS: dict[str, Callable] = {
    "digits": _digits,
    "mnist": _torchvision("MNIST"),
    "fashion-mnist": _torchvision("FashionMNIST"),
    "cifar10": _torchvision("CIFAR10"),
    "imagefolder": _imagefolder,
}
