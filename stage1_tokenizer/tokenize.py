"""The tokenize step: run a trained tokenizer's encoder over an image split and write a code dataset.

The split is cut into files by ``pipeline.core.code_shards`` (one file, or shards of ``shard_items`` items); each
process encodes and writes the files given to it, and the caller writes ``meta.json`` once all are there.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import torch
from rich.progress import Progress
from torch.utils.data import IterableDataset

from pipeline.core.code_shards import CODES_FILE, default_shard_items, shard_files
from pipeline.core.code_writer import write_meta, write_shard
from pipeline.core.errors import VqgenError
from pipeline.core.files import atomic_dir, sha256_file
from pipeline.core.images import ImageData, to_float


@torch.no_grad()
def encode_images(tokenizer, data: ImageData, batch_size: int = 256, device="cpu", start: int = 0,
                  stop: Optional[int] = None, progress: Optional[Progress] = None, with_labels: bool = False):
    """Codes of images ``start:stop`` (all by default), per level, as LongTensors ``[n, H, W, C]``, and with
    ``with_labels`` the labels of the images encoded, in the same order.

    ``data`` is an in-memory split or a streamed one: both give batches, and a streamed one may leave out
    unreadable files, so its labels come with its batches. Batches start at ``start``, so a shard's codes do not
    depend on which process encodes it."""
    tokenizer.eval()
    stop = len(data) if stop is None else stop
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in tokenizer.levels()}
    label_chunks: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)]
    with (Progress(transient=True) if progress is None else nullcontext(progress)) as bar:
        task = bar.add_task(f"tokenize {data.name}/{data.split}", total=stop - start)
        for batch, labels in data.batches(batch_size, start=start, stop=stop):
            images = to_float(batch.to(device))
            for name, codes in tokenizer.encode(images).items():
                chunks[name].append(codes.cpu())
            label_chunks.append(labels.long())
            bar.advance(task, images.shape[0])
        bar.remove_task(task)
    codes = {name: torch.cat(parts) if parts else torch.zeros(0, *spec["grid"], len(spec["codebook_sizes"]),
                                                              dtype=torch.long)
             for (name, parts), spec in zip(chunks.items(), tokenizer.levels().values())}
    return (codes, torch.cat(label_chunks)) if with_labels else codes


def check_fits(tokenizer, tokenizer_dir: Path, data: ImageData) -> None:
    if data.image_size != tokenizer.config.image_size or data.channels != tokenizer.config.in_channels:
        raise VqgenError(
            f"the tokenizer in {tokenizer_dir} takes {tokenizer.config.in_channels}x{tokenizer.config.image_size}"
            f"px images, but {data.name}/{data.split} gives {data.channels}x{data.image_size}px; "
            f"set data.image_size/data.channels to match")


def split_files(tokenizer, data: ImageData, shard_items: Optional[int]) -> tuple[int, list[tuple[str, int, int]]]:
    """``shard_items`` (default: about 1 GB of codes a file) and the files that cut the split."""
    shard_items = shard_items or default_shard_items(tokenizer.levels(), data.num_classes > 0)
    if isinstance(data, IterableDataset):  # tar shards are read in one pass: one codes file
        return shard_items, [(CODES_FILE, 0, len(data))]
    return shard_items, shard_files(len(data), shard_items)


def split_meta(tokenizer_dir: Path, data: ImageData, extra_meta: dict | None = None) -> dict:
    """What ``meta.json`` says about where the codes come from."""
    return {
        "tokenizer": {"dir": str(tokenizer_dir), "weights_sha256": sha256_file(tokenizer_dir / "model.safetensors")},
        "dataset": {"name": data.name, "split": data.split, "image_size": data.image_size,
                    "channels": data.channels, "classes": data.classes},
        **(extra_meta or {}),
    }


def tokenize_files(tokenizer, data: ImageData, directory: Path, files: list[tuple[str, int, int]],
                   indices: list[int], batch_size: int = 256, device="cpu", show_progress: bool = True) -> list[dict]:
    """Encode and write the files ``indices`` of ``files`` into ``directory``; their entries for meta.json."""
    records = []
    with Progress(transient=True, disable=not show_progress) as progress:
        for k in indices:
            name, start, stop = files[k]
            codes, labels = encode_images(tokenizer, data, batch_size, device, start, stop, progress,
                                          with_labels=True)
            labels = labels if data.num_classes > 0 else None
            records.append(write_shard(directory / name, codes, labels, tokenizer.levels()))
    return records


def tokenize_split(tokenizer, tokenizer_dir: Path, data: ImageData, out_dir: Path, batch_size: int = 256,
                   extra_meta: dict | None = None, shard_items: Optional[int] = None, device="cpu") -> None:
    """The whole split from this process, written atomically (the previous ``out_dir`` stays until the end)."""
    shard_items, files = split_files(tokenizer, data, shard_items)
    with atomic_dir(out_dir) as tmp:
        records = tokenize_files(tokenizer, data, tmp, files, list(range(len(files))), batch_size, device)
        write_meta(tmp, tokenizer.levels(), data.num_classes > 0, shard_items, records,
                   split_meta(tokenizer_dir, data, extra_meta))
