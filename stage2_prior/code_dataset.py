"""Code datasets: ``meta.json`` + ``codes.safetensors`` per split, as the design fixes them.

``codes.safetensors`` holds one integer tensor ``[N, H, W, C]`` per code level (stored in the smallest integer
type that holds the vocabulary) and ``labels`` ``[N]`` when the images had classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from pipeline.errors import VqgenError
from pipeline.files import atomic_dir, load_tensors, read_json, save_tensors, write_json

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
        write_json(tmp / META_FILE, {"format_version": FORMAT_VERSION, "num_items": num_items,
                                     "has_labels": labels is not None, **meta, "levels": level_meta})


class CodeDataset(Dataset):
    """A code dataset in memory. ``dataset[i]`` gives ``(codes of `level` as LongTensor [H, W, C], label)``.

    The label is -1 where the dataset has none.
    """

    def __init__(self, directory: str | Path, level: Optional[str] = None):
        self.directory = Path(directory)
        if not (self.directory / META_FILE).exists():
            raise VqgenError(f"{self.directory} is not a code dataset (no {META_FILE}); run `vqgen tokenize` first")
        self.meta = read_json(self.directory / META_FILE)
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise VqgenError(f"{self.directory}: code format version {self.meta.get('format_version')} is not "
                             f"{FORMAT_VERSION}; tokenize again with this vqgen")
        self.levels = {spec["name"]: spec for spec in self.meta["levels"]}
        self.level = level or self.meta["levels"][0]["name"]
        if self.level not in self.levels:
            raise VqgenError(f"{self.directory} has no code level {self.level!r}; it has {', '.join(self.levels)}")
        tensors = load_tensors(self.directory / CODES_FILE)
        self.codes = {name: tensors[name].long() for name in self.levels}
        for name, spec in self.levels.items():
            self._check(name, spec, self.codes[name])
        n = self.codes[self.level].shape[0]
        self.labels = tensors["labels"].long() if "labels" in tensors else torch.full((n,), -1, dtype=torch.long)

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
        return self.codes[self.level][index], self.labels[index]
