"""The files of an image folder split and their labels (``root/<class>/*`` with a fixed 90/10 split, or
``root/train/<class>`` + ``root/test/<class>``), listed without decoding any image: the in-memory and the streamed
loaders read the same list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .core.errors import VqgenError
from .image_transforms import BAD_IMAGE_ERRORS, bad_image_error, decode_image, pil_mode

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class FolderListing:
    files: list[tuple[Path, int]]  # (path, label), in the split's fixed order
    classes: list[str]
    split_root: Path


def list_image_folder(root_option: Optional[str], split: str) -> FolderListing:
    if not root_option:
        raise VqgenError("dataset 'imagefolder' needs a root: pass --data-root or set data.root")
    root = Path(root_option).expanduser()
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
    return FolderListing(files, classes, split_root)


def first_readable_size(paths, channels: Optional[int], on_bad_image: str, where: object) -> int:
    """The short side of the first readable image: the size of a split whose ``data.image_size`` is unset."""
    for path in paths:
        try:
            return decode_image(path, pil_mode(channels), None).shape[0]
        except BAD_IMAGE_ERRORS as err:
            if on_bad_image == "fail":
                raise bad_image_error(path, err) from None
    raise VqgenError(f"none of the images under {where} could be read")
