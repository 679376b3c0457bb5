"""The tokenize step: run a trained tokenizer's encoder over an image split and write a code dataset."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.progress import Progress

from pipeline.core.images import ImageData, to_float
from pipeline.core.files import sha256_file
from pipeline.core.code_dataset import write_code_dataset


@torch.no_grad()
def encode_images(tokenizer, data: ImageData, batch_size: int = 256, device="cpu") -> dict[str, torch.Tensor]:
    """Codes of every image, per level, as LongTensors ``[N, H, W, C]``."""
    tokenizer.eval()
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in tokenizer.levels()}
    with Progress(transient=True) as progress:
        task = progress.add_task(f"tokenize {data.name}/{data.split}", total=len(data))
        for start in range(0, len(data), batch_size):
            images = to_float(data.images[start : start + batch_size].to(device))
            for name, codes in tokenizer.encode(images).items():
                chunks[name].append(codes.cpu())
            progress.advance(task, images.shape[0])
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def tokenize_split(tokenizer, tokenizer_dir: Path, data: ImageData, out_dir: Path, batch_size: int = 256,
                   extra_meta: dict | None = None) -> None:
    codes = encode_images(tokenizer, data, batch_size)
    meta = {
        "tokenizer": {"dir": str(tokenizer_dir), "weights_sha256": sha256_file(tokenizer_dir / "model.safetensors")},
        "dataset": {"name": data.name, "split": data.split, "image_size": data.image_size,
                    "channels": data.channels, "classes": data.classes},
        **(extra_meta or {}),
    }
    labels = data.labels if data.num_classes > 0 else None
    write_code_dataset(out_dir, codes, tokenizer.levels(), labels, meta)
