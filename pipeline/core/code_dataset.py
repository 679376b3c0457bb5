"""Code datasets: ``meta.json`` + ``codes.safetensors`` per split, as the design fixes them.

``codes.safetensors`` holds one integer tensor ``[N, H, W, C]`` per code level (stored in the smallest integer
type that holds the vocabulary) and ``labels`` ``[N]`` when the images had classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from .errors import VqgenError
from .files import atomic_dir, load_tensors, read_json, save_tensors, sha256_file, write_json

FORMAT_VERSION = 1
META_FILE = "meta.json"
CODES_FILE = "codes.safetensors"


def storage_dtype(max_vocab: int) -> torch.dtype:
    """Smallest integer type that holds codes ``0 .. max_vocab - 1``."""
    if max_vocab <= 256:
        return torch.uint8
    if max_vocab <= 32768:
        return torch.int16
    return torch.int32


def write_code_dataset(
    directory: str | Path,
    codes: dict[str, torch.Tensor],
    levels: dict[str, dict[str, Any]],
    labels: Optional[torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """Write a code dataset atomically. ``levels`` maps level name -> {grid, codebook_sizes}."""
    tensors: dict[str, torch.Tensor] = {}
    level_meta = []
    for name, spec in levels.items():
        dtype = storage_dtype(max(spec["codebook_sizes"]))
        tensors[name] = codes[name].to(dtype)
        level_meta.append({"name": name, "grid": list(spec["grid"]), "codebook_sizes": list(spec["codebook_sizes"]),
                           "dtype": str(dtype).removeprefix("torch.")})
    if labels is not None:
        tensors["labels"] = labels.to(torch.int64)
    num_items = next(iter(codes.values())).shape[0]
    with atomic_dir(directory) as tmp:
        save_tensors(tmp / CODES_FILE, tensors)
        # The hash lets readers tell a damaged or swapped codes file from the one this meta.json describes.
        write_json(tmp / META_FILE, {"format_version": FORMAT_VERSION, "num_items": num_items,
                                     "has_labels": labels is not None, **meta, "levels": level_meta,
                                     "codes_sha256": sha256_file(tmp / CODES_FILE)})


class CodeDataset(Dataset):
    """A code dataset in memory. ``dataset[i]`` gives ``(codes of `level` as LongTensor [H, W, C], label)``.

    The label is -1 where the dataset has none.
    """

    def __init__(self, directory: str | Path, level: Optional[str] = None, all_levels: bool = False):
        self.directory = Path(directory)
        if not (self.directory / META_FILE).exists():
            raise VqgenError(f"{self.directory} is not a code dataset (no {META_FILE}); run `vqgen tokenize` first")
        self.meta = read_json(self.directory / META_FILE)
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise VqgenError(f"{self.directory}: code format version {self.meta.get('format_version')} is not "
                             f"{FORMAT_VERSION}; tokenize again with this vqgen")
        self.levels = {spec["name"]: spec for spec in self.meta["levels"]}
        self.level = level or self.meta["levels"][0]["name"]
        # Several levels (VQ-VAE-2) and no level chosen: items are dicts of every level's codes, coarse first.
        self.stacked = all_levels and level is None and len(self.levels) > 1
        if self.level not in self.levels:
            raise VqgenError(f"{self.directory} has no code level {self.level!r}; it has {', '.join(self.levels)}")
        tensors = load_tensors(self.directory / CODES_FILE)
        missing = [name for name in self.levels if name not in tensors]
        if missing:
            raise VqgenError(f"{self.directory / CODES_FILE} lacks the level(s) {', '.join(missing)} that its "
                             f"{META_FILE} lists; it is corrupt or from another run: tokenize again")
        self.codes = {name: tensors[name].long() for name in self.levels}
        for name, spec in self.levels.items():
            self._check(name, spec, self.codes[name])
        n = self.codes[self.level].shape[0]
        self.labels = tensors["labels"].long() if "labels" in tensors else torch.full((n,), -1, dtype=torch.long)
        if self.labels.shape[0] != n:
            raise VqgenError(f"{self.directory}: {self.labels.shape[0]} labels for {n} items; the file is corrupt: "
                             f"tokenize again")
        if self.num_classes and n and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise VqgenError(f"{self.directory}: labels run from {int(self.labels.min())} to {int(self.labels.max())}, "
                             f"outside the {self.num_classes} classes its {META_FILE} names; tokenize again")
        # Last: damage that still parses and stays in range (a flipped byte, a file from another run).
        expected = self.meta.get("codes_sha256")
        if expected is not None:
            actual = sha256_file(self.directory / CODES_FILE)
            if actual != expected:
                raise VqgenError(f"{self.directory / CODES_FILE} does not match the sha256 in its {META_FILE} "
                                 f"({actual[:12]} vs {expected[:12]}); it is corrupt or was replaced: tokenize again")

    def _check(self, name: str, spec: dict, codes: torch.Tensor) -> None:
        grid, sizes = spec["grid"], spec["codebook_sizes"]
        if list(codes.shape[1:]) != [*grid, len(sizes)]:
            raise VqgenError(f"{self.directory}: level {name!r} has shape {list(codes.shape)}, "
                             f"but meta.json says grid {grid} with {len(sizes)} code channel(s)")
        upper = torch.tensor(sizes)
        if codes.numel() and (codes.min() < 0 or (codes.amax(dim=(0, 1, 2)) >= upper).any()):
            raise VqgenError(f"{self.directory}: level {name!r} holds codes outside its codebook sizes {sizes}; "
                             f"the file is corrupt: tokenize again")

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
        return self.codes[self.level].shape[0]

    def __getitem__(self, index: int):
        return self.rows(index, index + 1, squeeze=True)

    def rows(self, start: int, stop: int, squeeze: bool = False):
        """``(codes, labels)`` for items ``start:stop``: a tensor, or a dict per level when stacked."""
        pick = (lambda t: t[start]) if squeeze else (lambda t: t[start:stop])
        codes = {name: pick(t) for name, t in self.codes.items()} if self.stacked else pick(self.codes[self.level])
        return codes, pick(self.labels)
