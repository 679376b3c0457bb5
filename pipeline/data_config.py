"""The ``data:`` section of a config: which image dataset, where, and at what size. No torch here: a config is
checked before torch loads (pipeline/datasets.py reads the images)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, PositiveInt, field_validator

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "digits"
    root: Optional[str] = None  # None: $VQGEN_DATA_DIR, else ~/.cache/vqgen/data (download there when online)
    image_size: Optional[PositiveInt] = None  # None: the dataset's own size (digits: 32)
    channels: Optional[Literal[1, 3]] = None  # None: the dataset's own (imagefolder: RGB)
    download: bool = True  # torchvision datasets: try to download when the files are missing
    on_bad_image: Literal["skip", "fail"] = "skip"  # imagefolder: unreadable files are skipped and counted, or fatal

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
        return name


def resolve_root(root: Optional[str]) -> Path:
    if root:
        return Path(root).expanduser()
    if os.environ.get("VQGEN_DATA_DIR"):
        return Path(os.environ["VQGEN_DATA_DIR"]).expanduser()
    return Path("~/.cache/vqgen/data").expanduser()
