"""WebDataset tar shards as a streamed split (``data.name: webdataset``): each sample is ``KEY.png`` (or jpg, jpeg,
webp, bmp) with an optional ``KEY.cls`` holding the integer label.

``data.root`` is a folder with ``train/`` and ``test/`` folders of ``.tar`` shards, or a pattern with ``{split}``
and brace ranges, e.g. ``/data/in1k/{split}-{000000..000146}.tar``. The ``webdataset`` package reads the shards
and splits them across DataLoader workers (and, for training, across DDP ranks); decoding is vqgen's own, so
images go through the same resize and crop as an image folder's and bad images follow ``data.on_bad_image``.
"""

from __future__ import annotations

import copy
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch.utils.data import IterableDataset

from .core.errors import VqgenError
from .image_transforms import BAD_IMAGE_ERRORS, TrainTransforms, bad_image_error, decode_image, item_generator, pil_mode
from .streamed_images import StreamedSplit

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
SHUFFLE_BUFFER = 512  # samples (still encoded) held to shuffle across shard boundaries while training


def resolve_shards(root: Optional[str], split: str) -> list[Path]:
    from braceexpand import braceexpand

    if not root:
        raise VqgenError("dataset 'webdataset' needs a root: a folder with train/ and test/ folders of .tar shards, "
                         "or a pattern with {split}, e.g. shards/{split}-{0000..0099}.tar")
    if "{split}" in root:
        shards = [Path(p).expanduser() for p in braceexpand(root.replace("{split}", split))]
        missing = [p for p in shards if not p.is_file()]
        if missing:
            raise VqgenError(f"data.root pattern {root!r} names {len(missing)} missing shard(s) for split {split!r}, "
                             f"e.g. {missing[0]}")
        return shards
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        raise VqgenError(f"webdataset root {root} has no {split}/ folder of .tar shards (or give a pattern with "
                         f"{{split}}, e.g. shards/{{split}}-{{0000..0099}}.tar)")
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise VqgenError(f"{folder} holds no .tar shards")
    return shards


def _sample_key(member_name: str) -> tuple[str, str]:
    """(key, extension) as webdataset splits a member name: the extension starts at the basename's first dot."""
    directory, _, base = member_name.rpartition("/")
    stem, _, extension = base.partition(".")
    return f"{directory}/{stem}" if directory else stem, extension.lower()


def scan_shards(shards: list[Path]) -> tuple[int, int, Optional[bytes]]:
    """(number of samples with an image, largest label + 1 or 0 without labels, the first image's bytes), from the
    tar headers and the small .cls members only."""
    count, top_label, first_image = 0, -1, None
    for shard in shards:
        try:
            with tarfile.open(shard, "r:") as tar:
                keys_with_image = set()
                for member in tar:
                    key, extension = _sample_key(member.name)
                    if extension in IMAGE_EXTENSIONS and member.isfile():
                        keys_with_image.add(key)
                        if first_image is None:
                            first_image = tar.extractfile(member).read()
                    elif extension == "cls" and member.isfile():
                        text = tar.extractfile(member).read().decode(errors="replace").strip()
                        if not text.lstrip("-").isdigit() or int(text) < 0:
                            raise VqgenError(f"{shard}: {member.name} holds {text[:20]!r}, not a class number")
                        top_label = max(top_label, int(text))
                count += len(keys_with_image)
        except (tarfile.TarError, OSError) as err:
            raise VqgenError(f"cannot read shard {shard}: {err}") from None
    return count, top_label + 1, first_image


class WebDatasetSplit(StreamedSplit, IterableDataset):
    """One split of tar shards. Evaluation reads every shard in order (one worker: ``StreamedSplit.batches``);
    a training copy (:meth:`for_training`) shuffles shards and samples per epoch, splits shards across ranks
    and workers, and adds the random crop and flip."""

    def __init__(self, config, split: str):
        self.name, self.split = "webdataset", split
        self.shards = resolve_shards(config.root, split)
        self.count, num_classes, first_image = scan_shards(self.shards)
        if self.count == 0:
            raise VqgenError(f"the {len(self.shards)} shard(s) of split {split!r} under {config.root} hold no "
                             f"images ({', '.join(IMAGE_EXTENSIONS)})")
        self.classes = [str(i) for i in range(num_classes)]
        self.mode, self.channels = pil_mode(config.channels), 1 if config.channels == 1 else 3
        self.on_bad_image, self.workers = config.on_bad_image, config.workers
        if config.image_size:
            self.image_size = config.image_size
        else:
            try:
                self.image_size = decode_image(first_image, self.mode, None).shape[0]
            except BAD_IMAGE_ERRORS as err:
                raise VqgenError(f"the first image of {self.shards[0]} cannot be read ({err}); set data.image_size "
                                 f"or fix the shard") from None
        self.transforms: Optional[TrainTransforms] = None
        self.seed, self.epoch = 0, -1

    def for_training(self, transforms: TrainTransforms, seed: int) -> "WebDatasetSplit":
        twin = copy.copy(self)
        twin.transforms, twin.seed = transforms, seed
        return twin

    def __len__(self) -> int:
        return self.count

    def _tar_error(self, err: Exception) -> bool:
        """webdataset's handler for a shard it cannot read: stop (fail) or skip the rest of that shard."""
        if self.on_bad_image == "fail":
            raise VqgenError(f"cannot read a webdataset shard: {err}") from None
        print(f"warning: skipping the rest of a damaged shard: {err}", file=sys.stderr)
        return True

    def _decode(self, sample: dict):
        """``(uint8 [C, S, S], label)``, or None for an unreadable image (skip)."""
        name = f"{sample.get('__url__')}:{sample.get('__key__')}"
        extension = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
        label = int(sample["cls"].decode().strip()) if "cls" in sample else 0
        size = self.transforms.read_size if self.transforms is not None else self.image_size
        try:
            if extension is None:
                raise ValueError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) in this sample")
            image = torch.from_numpy(decode_image(sample[extension], self.mode, size)).permute(2, 0, 1).contiguous()
        except BAD_IMAGE_ERRORS as err:
            if self.on_bad_image == "fail":
                raise bad_image_error(name, err) from None
            return None
        if self.transforms is not None:
            # The per-item generator depends on (seed, epoch, key), not on which worker or rank reads the sample.
            index = zlib.crc32(name.encode())
            image = self.transforms(image, item_generator(self.seed, self.epoch, index))
        return image, label

    def __iter__(self) -> Iterator:
        import webdataset as wds

        training = self.transforms is not None
        self.epoch += 1  # each worker's copy counts its own passes: one per epoch
        urls = [str(p) for p in self.shards]
        if training:
            pipeline = wds.WebDataset(urls, shardshuffle=len(urls), detshuffle=True, seed=self.seed,
                                      nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                                      handler=self._tar_error, empty_check=False)
            pipeline = pipeline.compose(wds.filters.detshuffle(SHUFFLE_BUFFER, SHUFFLE_BUFFER // 4,
                                                               seed=self.seed, epoch=self.epoch - 1))
        else:  # every image once, in shard order; no rank split (each process of an evaluation reads it all)
            pipeline = wds.WebDataset(urls, shardshuffle=False, nodesplitter=lambda src: src,
                                      workersplitter=wds.split_by_worker, handler=self._tar_error,
                                      empty_check=False)
        for sample in pipeline:
            item = self._decode(sample)
            if item is not None or not training:  # training drops unreadable images; evaluation counts them
                yield item
