"""Writing code datasets: one file per shard (each written atomically by whichever process encoded it), then
``meta.json`` last, listing every file with its item count, sha256 and value ranges.

The ranges are measured here, while the codes are in memory, so a reader of a sharded dataset checks them against
the vocabulary without scanning gigabytes; the sha256 then vouches that the bytes are the ones measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from .code_shards import FORMAT_VERSION, META_FILE, default_shard_items, shard_files, storage_dtype
from .errors import VqgenError
from .files import atomic_dir, save_tensors, sha256_file, write_json


def level_entries(levels: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``meta.json``'s description of each level: name, grid, codebook sizes and storage type."""
    return [{"name": name, "grid": list(spec["grid"]), "codebook_sizes": list(spec["codebook_sizes"]),
             "dtype": str(storage_dtype(max(spec["codebook_sizes"]))).removeprefix("torch.")}
            for name, spec in levels.items()]


def write_shard(path: Path, codes: dict[str, torch.Tensor], labels: Optional[torch.Tensor],
                levels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write one file of codes ``[n, H, W, C]`` per level (and labels ``[n]``); return its entry for meta.json."""
    tensors: dict[str, torch.Tensor] = {}
    ranges: dict[str, Any] = {}
    for name, spec in levels.items():
        level = codes[name]
        sizes = spec["codebook_sizes"]
        if level.numel():
            low, high = int(level.min()), level.amax(dim=(0, 1, 2)).tolist()
            if low < 0 or any(h >= s for h, s in zip(high, sizes)):
                raise VqgenError(f"level {name!r} has codes from {low} to {max(high)}, outside its codebook sizes "
                                 f"{sizes}; the tokenizer's levels() disagree with its encoder")
            ranges[name] = {"min": low, "max": high}
        tensors[name] = level.to(storage_dtype(max(sizes)))
    if labels is not None:
        tensors["labels"] = labels.to(torch.int64)
        if labels.numel():
            ranges["labels"] = {"min": int(labels.min()), "max": int(labels.max())}
    save_tensors(path, tensors)
    items = next(iter(codes.values())).shape[0]
    return {"file": path.name, "items": items, "sha256": sha256_file(path), "ranges": ranges}


def write_meta(directory: Path, levels: dict[str, dict[str, Any]], has_labels: bool, shard_items: int,
               shards: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Written last: a dataset whose meta.json exists is complete."""
    write_json(directory / META_FILE, {
        "format_version": FORMAT_VERSION, "num_items": sum(s["items"] for s in shards), "has_labels": has_labels,
        **meta, "levels": level_entries(levels), "shard_items": shard_items, "shards": shards})


def write_code_dataset(
    directory: str | Path,
    codes: dict[str, torch.Tensor],
    levels: dict[str, dict[str, Any]],
    labels: Optional[torch.Tensor],
    meta: dict[str, Any],
    shard_items: Optional[int] = None,
) -> None:
    """Write a code dataset atomically from one process. ``levels`` maps level name -> {grid, codebook_sizes};
    ``shard_items`` (default: about 1 GB of codes) is how many items one file holds."""
    shard_items = shard_items or default_shard_items(levels, labels is not None)
    num_items = next(iter(codes.values())).shape[0]
    with atomic_dir(directory) as tmp:
        shards = [write_shard(tmp / name, {k: v[start:end] for k, v in codes.items()},
                              None if labels is None else labels[start:end], levels)
                  for name, start, end in shard_files(num_items, shard_items)]
        write_meta(tmp, levels, labels is not None, shard_items, shards, meta)
