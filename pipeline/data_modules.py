"""The training data of both stages as Lightning DataModules: an image dataset's splits for a tokenizer, a code
dataset's splits for a prior. The train split is shuffled in an order that depends on (seed, epoch) alone, so a
resumed run sees the batches an uninterrupted one would; the test split validates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .core.code_dataset import META_FILE, CodeDataset
from .core.images import ImageData
from .datasets import DataConfig, load_split

VAL_BATCH_SIZE = 256


class EpochRandomSampler(RandomSampler):
    """Shuffles with a permutation that depends on (seed, epoch) alone (a plain RandomSampler continues its
    generator, which a new process restarts). Lightning calls ``set_epoch``; under DDP it swaps this for a
    DistributedSampler, which is seeded the same way."""

    def __init__(self, data_source, seed: int):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(hash((self.seed, self.epoch)) & 0x7FFF_FFFF_FFFF_FFFF)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochRandomSampler(dataset, seed) if shuffle else None,
                      num_workers=num_workers, drop_last=shuffle and len(dataset) > batch_size,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None,
                      persistent_workers=num_workers > 0)


class SplitsDataModule(L.LightningDataModule):
    """A train split and an optional test split, loaded once by ``setup``: a step calls it first to size the
    model from the data, and Lightning's call during ``fit`` then finds them loaded."""

    def __init__(self, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train: Optional[Dataset] = None
        self.test: Optional[Dataset] = None

    def load(self) -> tuple[Dataset, Optional[Dataset]]:
        raise NotImplementedError

    def setup(self, stage: str = "fit") -> None:
        if self.train is None:
            self.train, self.test = self.load()

    def train_dataloader(self) -> DataLoader:
        return loader(self.train, self.batch_size, True, self.num_workers, self.seed)

    def val_dataloader(self):
        return loader(self.test, VAL_BATCH_SIZE, False, 0, self.seed) if self.test is not None else []


class ImageDataModule(SplitsDataModule):
    """A configured image dataset (``data:``): its train split to train on, its test split to validate on."""

    def __init__(self, config: DataConfig, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.config = config

    def load(self) -> tuple[ImageData, ImageData]:
        return load_split(self.config, "train"), load_split(self.config, "test")

    def preview(self, n: int) -> torch.Tensor:
        """The first ``n`` validation images (uint8): the same ones at every epoch end."""
        return self.test.images[:n]


class CodeDataModule(SplitsDataModule):
    """A code dataset (``codes/train``, and ``codes/test`` when tokenized) of one level or all of them."""

    def __init__(self, codes_root: Path, level: Optional[str], batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.codes_root, self.level = Path(codes_root), level

    def load(self) -> tuple[CodeDataset, Optional[CodeDataset]]:
        test_dir = self.codes_root / "test"
        test = CodeDataset(test_dir, self.level, all_levels=True) if (test_dir / META_FILE).exists() else None
        return CodeDataset(self.codes_root / "train", self.level, all_levels=True), test
