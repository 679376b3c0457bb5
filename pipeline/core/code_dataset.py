"""Code datasets: ``meta.json`` + ``codes.safetensors`` (small) or ``codes-XXXXX-of-YYYYY.safetensors`` shards
(large) per split, as the design fixes them, read memory-mapped.

Each file holds one integer tensor ``[n, H, W, C]`` per code level (stored in the smallest integer type that holds
the vocabulary) and ``labels`` ``[n]`` when the images had classes. ``meta.json`` (format 2) lists the files with
their item counts, sha256 and value ranges; format 1 (one ``codes.safetensors`` and ``codes_sha256``) still reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from .code_shards import CODES_FILE, FORMAT_VERSION, META_FILE, shard_name, storage_dtype  # noqa: F401 (re-exported)
from .code_writer import write_code_dataset  # noqa: F401 (re-exported: the format's writer beside its reader)
from .errors import VqgenError
from .files import read_json, sha256_file
from .mapped_tensors import map_tensors

READABLE_VERSIONS = (1, FORMAT_VERSION)
SCAN_ROWS = 1 << 16  # a single file's range check reads this many items at a time, never all of them as int64


def listed_files(directory: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The files ``meta.json`` lists, as ``{file, items, sha256, ranges}``; format 1 had one and no ranges."""
    if meta["format_version"] == 1:
        return [{"file": CODES_FILE, "items": meta.get("num_items"), "sha256": meta.get("codes_sha256"),
                 "ranges": None}]
    shards = meta.get("shards") or []
    if not shards:
        raise VqgenError(f"{directory / META_FILE} lists no code files; tokenize again")
    if len(shards) > 1:  # names carry the count, so a shard of another cut or a lost entry shows here
        expected = [shard_name(k, len(shards)) for k in range(len(shards))]
        if [s["file"] for s in shards] != expected:
            raise VqgenError(f"{directory / META_FILE} lists {len(shards)} shards but names them "
                             f"{shards[0]['file']} ... {shards[-1]['file']}; it is corrupt: tokenize again")
    total = sum(s["items"] for s in shards)
    if total != meta.get("num_items"):
        raise VqgenError(f"{directory / META_FILE}: its shards hold {total} items, but it says {meta.get('num_items')}"
                         f"; it is corrupt: tokenize again")
    return shards


def codes_digest(directory: str | Path) -> str:
    """What a prior's fingerprint records of its codes: the file's sha256 for one file (as before shards), else
    one sha256 over the shards' recorded ones (each is checked whenever the dataset is opened)."""
    directory = Path(directory)
    if (directory / CODES_FILE).exists() or not (directory / META_FILE).exists():
        return sha256_file(directory / CODES_FILE)
    meta = read_json(directory / META_FILE)
    return hashlib.sha256(" ".join(s["sha256"] for s in meta.get("shards", [])).encode()).hexdigest()


class CodeDataset(Dataset):
    """A code dataset, memory-mapped. ``dataset[i]`` gives ``(codes of `level` as LongTensor [H, W, C], label)``;
    only the items asked for are read and converted, so memory does not grow with the dataset.

    The label is -1 where the dataset has none.
    """

    def __init__(self, directory: str | Path, level: Optional[str] = None, all_levels: bool = False):
        self.directory = Path(directory)
        if not (self.directory / META_FILE).exists():
            raise VqgenError(f"{self.directory} is not a code dataset (no {META_FILE}); run `vqgen tokenize` first")
        self.meta = read_json(self.directory / META_FILE)
        if self.meta.get("format_version") not in READABLE_VERSIONS:
            raise VqgenError(f"{self.directory}: code format version {self.meta.get('format_version')} is not one "
                             f"this vqgen reads ({', '.join(map(str, READABLE_VERSIONS))}); tokenize again with it")
        self.levels = {spec["name"]: spec for spec in self.meta["levels"]}
        self.level = level or self.meta["levels"][0]["name"]
        # Several levels (VQ-VAE-2) and no level chosen: items are dicts of every level's codes, coarse first.
        self.stacked = all_levels and level is None and len(self.levels) > 1
        if self.level not in self.levels:
            raise VqgenError(f"{self.directory} has no code level {self.level!r}; it has {', '.join(self.levels)}")
        self.files = listed_files(self.directory, self.meta)
        self.starts = [0]
        for entry in self.files:
            self.starts.append(self.starts[-1] + (entry["items"] or 0))
        self._mapped: list[Optional[dict[str, torch.Tensor]]] = [None] * len(self.files)
        for k, entry in enumerate(self.files):
            self._check_file(k, entry)
        # Last: damage that still parses and stays in range (a flipped byte, a file from another run).
        for entry in self.files:
            self._check_sha256(entry)

    # --- checks, cheapest first ---------------------------------------------------------------------------------

    def _check_file(self, k: int, entry: dict[str, Any]) -> None:
        path = self.directory / entry["file"]
        if not path.exists():
            raise VqgenError(f"{path} is missing: {self.directory / META_FILE} lists {len(self.files)} code "
                             f"file(s); the dataset is incomplete: tokenize again")
        tensors = self._tensors(k)
        missing = [name for name in self.levels if name not in tensors]
        if missing:
            raise VqgenError(f"{path} lacks the level(s) {', '.join(missing)} that its {META_FILE} lists; it is "
                             f"corrupt or from another run: tokenize again")
        n = tensors[self.level].shape[0]
        if entry["items"] is None:  # format 1 before num_items: the file says
            entry["items"] = n
            self.starts[k + 1:] = [s + n for s in self.starts[k + 1:]]
        for name, spec in self.levels.items():
            self._check_shape(name, spec, tensors[name], entry["items"])
        if self.meta.get("has_labels"):
            labels = tensors.get("labels")
            count = 0 if labels is None else labels.shape[0]
            if count != entry["items"]:
                raise VqgenError(f"{self.directory}: {count} labels for {entry['items']} items in {entry['file']}; "
                                 f"the file is corrupt: tokenize again")
        self._check_ranges(entry, tensors)

    def _check_shape(self, name: str, spec: dict, codes: torch.Tensor, items: int) -> None:
        grid, sizes = spec["grid"], spec["codebook_sizes"]
        if list(codes.shape[1:]) != [*grid, len(sizes)]:
            raise VqgenError(f"{self.directory}: level {name!r} has shape {list(codes.shape)}, "
                             f"but meta.json says grid {grid} with {len(sizes)} code channel(s)")
        if codes.shape[0] != items:
            raise VqgenError(f"{self.directory}: level {name!r} has {codes.shape[0]} items, but meta.json says "
                             f"{items}; the file is corrupt: tokenize again")

    def _check_ranges(self, entry: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Codes inside the codebooks, labels inside the classes. One file (small) is scanned; shards (large)
        are checked by the ranges their writer measured, which their sha256 vouches for."""
        ranges = entry.get("ranges") if len(self.files) > 1 else None
        if ranges is None:
            ranges = scan_ranges(tensors, self.levels)
        for name, spec in self.levels.items():
            found, sizes = ranges.get(name), spec["codebook_sizes"]
            if found and (found["min"] < 0 or any(h >= s for h, s in zip(found["max"], sizes))):
                raise VqgenError(f"{self.directory}: level {name!r} holds codes outside its codebook sizes {sizes}; "
                                 f"the file is corrupt: tokenize again")
        found = ranges.get("labels")
        if self.num_classes and found and (found["min"] < 0 or found["max"] >= self.num_classes):
            raise VqgenError(f"{self.directory}: labels run from {found['min']} to {found['max']}, outside the "
                             f"{self.num_classes} classes its {META_FILE} names; tokenize again")

    def _check_sha256(self, entry: dict[str, Any]) -> None:
        expected = entry["sha256"]
        if expected is not None:
            actual = sha256_file(self.directory / entry["file"])
            if actual != expected:
                raise VqgenError(f"{self.directory / entry['file']} does not match the sha256 in its {META_FILE} "
                                 f"({actual[:12]} vs {expected[:12]}); it is corrupt or was replaced: tokenize again")

    # --- reading ------------------------------------------------------------------------------------------------

    def _tensors(self, k: int) -> dict[str, torch.Tensor]:
        if self._mapped[k] is None:
            self._mapped[k] = map_tensors(self.directory / self.files[k]["file"])
        return self._mapped[k]

    def __getstate__(self):
        # Worker processes (spawn) map the files again instead of receiving a pickled copy of every code.
        return {**self.__dict__, "_mapped": [None] * len(self.files)}

    @property
    def grid(self) -> list[int]:
        return self.levels[self.level]["grid"]

    @property
    def codebook_sizes(self) -> list[int]:
        return self.levels[self.level]["codebook_sizes"]

    @property
    def num_classes(self) -> int:
        return len(self.meta.get("dataset", {}).get("classes", [])) if self.meta.get("has_labels") else 0

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int):
        codes, labels = self.take([index])
        return ({name: t[0] for name, t in codes.items()} if self.stacked else codes[0]), labels[0]

    def __getitems__(self, indices: list[int]) -> list:
        """A DataLoader's batch in one gather per file, not one lookup per item (it calls this when it exists)."""
        codes, labels = self.take(indices)
        if self.stacked:
            return [({name: t[i] for name, t in codes.items()}, labels[i]) for i in range(len(labels))]
        return list(zip(codes, labels))

    def rows(self, start: int, stop: int):
        """``(codes, labels)`` for items ``start:stop`` as int64: a tensor, or a dict per level when stacked."""
        return self.take(range(*slice(start, stop).indices(len(self))))

    def take(self, indices):
        """``(codes, labels)`` of the items ``indices``, read from their files and converted to int64 alone."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if index.numel() and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"items {index.min()}..{index.max()} of a code dataset of {len(self)}")
        index = index % max(1, len(self))
        names = list(self.levels) if self.stacked else [self.level]
        codes = {name: torch.empty(len(index), *self.levels[name]["grid"], len(self.levels[name]["codebook_sizes"]),
                                   dtype=torch.long) for name in names}
        labels = torch.full((len(index),), -1, dtype=torch.long)
        file_of = torch.bucketize(index, torch.tensor(self.starts), right=True) - 1
        for k in file_of.unique().tolist():
            where = (file_of == k).nonzero().squeeze(1)
            rows, tensors = index[where] - self.starts[k], self._tensors(k)
            for name in names:
                codes[name][where] = tensors[name][rows].long()
            if "labels" in tensors:
                labels[where] = tensors["labels"][rows]
        return (codes if self.stacked else codes[self.level]), labels


def scan_ranges(tensors: dict[str, torch.Tensor], levels: dict[str, dict]) -> dict[str, Any]:
    """Smallest and largest code per level (largest per channel) and label, read a block of items at a time."""
    out: dict[str, Any] = {}
    for name in [*levels, "labels"]:
        t = tensors.get(name)
        if t is None or t.numel() == 0:
            continue
        lows, highs = [], []
        for begin in range(0, t.shape[0], SCAN_ROWS):
            block = t[begin:begin + SCAN_ROWS]
            lows.append(int(block.min()))
            highs.append(block.amax(dim=tuple(range(block.dim() - 1))) if name != "labels" else block.max())
        high = torch.stack(highs).amax(dim=0)
        out[name] = {"min": min(lows), "max": high.tolist() if name != "labels" else int(high)}
    return out
