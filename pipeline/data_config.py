"""The ``data:`` section of a config: which image dataset, where, and at what size. No torch here: a config is
checked before torch loads (pipeline/datasets.py reads the images)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder", "webdataset")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# stream: auto streams an image folder whose decoded uint8 pixels would pass this; smaller ones load into memory.
STREAM_ABOVE_BYTES = 2 << 30
# Keys that change how a split is read, never what it holds: left out of the fingerprints.
READ_ONLY_KEYS = {"stream", "workers"}
# How files are decoded (2: short side resized, centre crop; 1 squashed non-square images): in the fingerprints and
# FID cache names of the datasets read from files, so a change of it redoes their work.
FILE_DECODE_VERSION = 2
FILE_DATASETS = ("imagefolder", "webdataset")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "digits"
    root: Optional[str] = None  # None: $VQGEN_DATA_DIR, else ~/.cache/vqgen/data (download there when online)
    image_size: Optional[PositiveInt] = None  # None: the dataset's own size (digits: 32)
    channels: Optional[Literal[1, 3]] = None  # None: the dataset's own (imagefolder: RGB)
    download: bool = True  # torchvision datasets: try to download when the files are missing
    on_bad_image: Literal["skip", "fail"] = "skip"  # imagefolder: unreadable files are skipped and counted, or fatal
    # imagefolder: auto streams folders above STREAM_ABOVE_BYTES of pixels; webdataset always streams, and the
    # built-in datasets are always in memory.
    stream: Literal["auto", True, False] = "auto"
    workers: Optional[NonNegativeInt] = None  # DataLoader workers that read a streamed split (None: up to 4)
    # Training only: the short side is read at image_size * train_crop_scale and a random image_size square is
    # cut from it (1: no crop); hflip flips half the images.
    train_crop_scale: float = Field(1.0, ge=1.0, le=4.0)
    hflip: bool = False

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
        return name

    def fingerprint_dump(self) -> dict:
        """The settings that change the images a model sees: the read-only keys left out, and the training
        transforms only when set, so runs made before they existed keep their fingerprints."""
        dump = self.model_dump(mode="json", exclude=READ_ONLY_KEYS)
        for key in ("train_crop_scale", "hflip"):
            if dump[key] == DataConfig.model_fields[key].default:
                del dump[key]
        if self.name in FILE_DATASETS:
            dump["decode"] = FILE_DECODE_VERSION
        if self.train_crop_scale != 1.0:  # in memory, crops come from resized images; streamed, from the files
            dump["stream"] = self.stream
        return dump


def resolve_root(root: Optional[str]) -> Path:
    if root:
        return Path(root).expanduser()
    if os.environ.get("VQGEN_DATA_DIR"):
        return Path(os.environ["VQGEN_DATA_DIR"]).expanduser()
    return Path("~/.cache/vqgen/data").expanduser()
