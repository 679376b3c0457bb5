"""The tokenize step: run a trained tokenizer's encoder over an image split and write a code dataset."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.progress import Progress

from pipeline.core.images import ImageData, to_float
from pipeline.core.files import sha256_file
from pipeline.core.code_dataset import write_code_dataset


@torch.no_grad()
def encode_images(tokenizer, data: ImageData, batch_size: int = 256, device="cpu",
                  with_labels: bool = False):
    """Codes of every image, per level, as LongTensors ``[N, H, W, C]`` (and the labels of the images encoded, in
    the same order, with ``with_labels``). ``data`` is an in-memory split or a streamed one: both give batches,
    and a streamed one may leave out unreadable files, so its labels come with its batches."""
    tokenizer.eval()
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in tokenizer.levels()}
    label_chunks: list[torch.Tensor] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"tokenize {data.name}/{data.split}", total=len(data))
        for batch, labels in data.batches(batch_size):
            images = to_float(batch.to(device))
            for name, codes in tokenizer.encode(images).items():
                chunks[name].append(codes.cpu())
            label_chunks.append(labels)
            progress.advance(task, images.shape[0])
    codes = {name: torch.cat(parts) for name, parts in chunks.items()}
    return (codes, torch.cat(label_chunks)) if with_labels else codes


def tokenize_split(tokenizer, tokenizer_dir: Path, data: ImageData, out_dir: Path, batch_size: int = 256,
                   extra_meta: dict | None = None) -> None:
    codes, encoded_labels = encode_images(tokenizer, data, batch_size, with_labels=True)
    meta = {
        "tokenizer": {"dir": str(tokenizer_dir), "weights_sha256": sha256_file(tokenizer_dir / "model.safetensors")},
        "dataset": {"name": data.name, "split": data.split, "image_size": data.image_size,
                    "channels": data.channels, "classes": data.classes},
        **(extra_meta or {}),
    }
    labels = encoded_labels if data.num_classes > 0 else None
    write_code_dataset(out_dir, codes, tokenizer.levels(), labels, meta)
