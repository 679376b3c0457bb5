"""Where a code dataset's items live: its file names and which items each file holds.

A dataset of at most ``shard_items`` items is one file, ``codes.safetensors``; a larger one is cut into shards
``codes-00000-of-00012.safetensors``, shard k holding items ``[k * shard_items, (k + 1) * shard_items)``. The cut
depends on the item count and ``shard_items`` alone, never on how many processes wrote it, so one process and
eight write the same files.
"""

from __future__ import annotations

import math
from typing import Any

import torch

FORMAT_VERSION = 2  # 2: meta.json lists the files ("shards"); 1: one codes.safetensors and codes_sha256
META_FILE = "meta.json"
CODES_FILE = "codes.safetensors"
SHARD_BYTES = 1_000_000_000  # a shard's target size: "each under ~1 GB"


def storage_dtype(max_vocab: int) -> torch.dtype:
    """Smallest integer type that holds codes ``0 .. max_vocab - 1``."""
    if max_vocab <= 256:
        return torch.uint8
    if max_vocab <= 32768:
        return torch.int16
    return torch.int32


def item_bytes(levels: dict[str, dict[str, Any]], has_labels: bool) -> int:
    """Bytes one item takes on disk: every level's grid x channels in its storage type, and an int64 label."""
    total = 8 if has_labels else 0
    for spec in levels.values():
        itemsize = torch.empty((), dtype=storage_dtype(max(spec["codebook_sizes"]))).element_size()
        total += math.prod(spec["grid"]) * len(spec["codebook_sizes"]) * itemsize
    return total


def default_shard_items(levels: dict[str, dict[str, Any]], has_labels: bool) -> int:
    return max(1, SHARD_BYTES // item_bytes(levels, has_labels))


def shard_name(index: int, count: int) -> str:
    return f"codes-{index:05d}-of-{count:05d}.safetensors"


def shard_files(num_items: int, shard_items: int) -> list[tuple[str, int, int]]:
    """``(file name, first item, end item)`` per file: one ``codes.safetensors`` when everything fits in one."""
    if num_items <= shard_items:
        return [(CODES_FILE, 0, num_items)]
    count = math.ceil(num_items / shard_items)
    return [(shard_name(k, count), k * shard_items, min(num_items, (k + 1) * shard_items)) for k in range(count)]


def shards_of_rank(num_files: int, rank: int, world_size: int) -> list[int]:
    """The files one process writes: every ``world_size``-th, so the work is even whatever the count."""
    return list(range(rank, num_files, world_size))
