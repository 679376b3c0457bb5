"""The training data of both stages as Lightning DataModules: an image dataset's splits for a tokenizer, a code
dataset's splits for a prior. The train split is shuffled in an order that depends on (seed, epoch) alone, so a
resumed run sees the batches an uninterrupted one would; the test split validates. A checkpoint written mid-epoch
holds how far the epoch had gone (the DataModule's state_dict), and the resumed run skips the batches already done."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from .core.code_dataset import META_FILE, CodeDataset
from .core.images import ImageData
from .datasets import DataConfig, load_split
from .epoch_samplers import EpochRandomSampler, train_sampler  # noqa: F401  (EpochRandomSampler: where it was)
from .image_transforms import TrainTransforms, item_generator
from .streamed_images import StreamedSplit, collate_readable

VAL_BATCH_SIZE = 256


def loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int,
           sampler: Optional[Sampler] = None) -> DataLoader:
    """``shuffle``: the train split, in ``sampler``'s order (by default from the first batch of epoch 0)."""
    if isinstance(dataset, IterableDataset):  # tar shards: the dataset shuffles and splits itself
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_training,
                          persistent_workers=num_workers > 0)
    if isinstance(dataset, StreamedSplit) and not shuffle:  # evaluating a streamed split: unreadable files dropped
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_training)
    sampler = (sampler or train_sampler(dataset, seed, batch_size, None)) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
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
        self.resume_position: Optional[dict[str, int]] = None  # from a checkpoint, for the next train loader

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the epoch Lightning resumes in and how many of its batches were trained on."""
        if self.trainer is None:
            return {}
        loop = self.trainer.fit_loop
        if loop.epoch_progress.current.processed > loop.epoch_progress.current.completed:
            # Written at an epoch's end (one that max_steps cut short too): Lightning resumes with the next epoch.
            return {"epoch": self.trainer.current_epoch + 1, "batches": 0}
        return {"epoch": self.trainer.current_epoch, "batches": loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.resume_position = {"epoch": int(state["epoch"]), "batches": int(state["batches"])} if state else None

    def load(self) -> tuple[Dataset, Optional[Dataset]]:
        raise NotImplementedError

    def setup(self, stage: str = "fit") -> None:
        if self.train is None:
            self.train, self.test = self.load()

    def train_dataloader(self) -> DataLoader:
        position, self.resume_position = self.resume_position, None
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = train_sampler(self.train, self.seed, self.batch_size, position, replicas, rank)
        return loader(self.train, self.batch_size, True, self.num_workers, self.seed, sampler)

    def val_dataloader(self):
        if self.test is None:
            return []
        # A streamed test split is read by workers too; an in-memory one needs none.
        workers = self.num_workers if isinstance(self.test, StreamedSplit) else 0
        return loader(self.test, VAL_BATCH_SIZE, False, workers, self.seed)


class ImageDataModule(SplitsDataModule):
    """A configured image dataset (``data:``): its train split to train on, its test split to validate on."""

    def __init__(self, config: DataConfig, batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.config = config

    def load(self) -> tuple[Dataset, Union[ImageData, StreamedSplit]]:
        """The train split with the configured training transforms, the test split as it is."""
        train = load_split(self.config, "train")
        transforms = TrainTransforms(train.image_size, self.config.train_crop_scale, self.config.hflip)
        return training_view(train, transforms, self.seed), load_split(self.config, "test")

    def preview(self, n: int) -> torch.Tensor:
        """The first ``n`` validation images (uint8): the same ones at every epoch end."""
        return self.test.head(n)


def collate_training(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels, _ = collate_readable(items)
    return images, labels


def training_view(split, transforms: TrainTransforms, seed: int) -> Dataset:
    """The train split as the tokenizer trains on it: with random crop and flip when configured."""
    if isinstance(split, StreamedSplit):
        return split.for_training(transforms, seed)
    return TransformedImages(split, transforms, seed) if transforms.active else split


class TransformedImages(Dataset):
    """An in-memory split with training transforms, drawn from (seed, epoch, index) as a streamed split's are."""

    def __init__(self, data: ImageData, transforms: TrainTransforms, seed: int):
        self.data, self.transforms, self.seed = data, transforms, seed
        self.takes_epoch = True
        self.channels, self.image_size = data.channels, data.image_size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (int(key), None)
        generator = item_generator(self.seed, epoch, index) if epoch is not None else None
        return self.transforms(self.data.images[index], generator), self.data.labels[index]


class CodeDataModule(SplitsDataModule):
    """A code dataset (``codes/train``, and ``codes/test`` when tokenized) of one level or all of them."""

    def __init__(self, codes_root: Path, level: Optional[str], batch_size: int, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.codes_root, self.level = Path(codes_root), level

    def load(self) -> tuple[CodeDataset, Optional[CodeDataset]]:
        test_dir = self.codes_root / "test"
        test = CodeDataset(test_dir, self.level, all_levels=True) if (test_dir / META_FILE).exists() else None
        return CodeDataset(self.codes_root / "train", self.level, all_levels=True), test
