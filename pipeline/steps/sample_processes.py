"""``vqgen sample --devices N``: the batches dealt round-robin to N processes (one per CUDA device, or N CPU
processes), each loading the prior and the tokenizer itself; their batches come back through files in a temporary
folder and are put back in batch order, so the output is laid out as one process writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from stage1_tokenizer.tokenizer import Tokenizer
from stage2_prior.persistence import load_prior

from ..process_pool import process_device, run_processes
from .sample_batches import Batch, batch_sizes, draw_batches

IMAGES = "images"


def _worker(rank: int, job: dict) -> dict[str, torch.Tensor]:
    """One process: its share of the batches, images and codes each concatenated in batch order."""
    device = process_device(job["accelerator"], rank)
    prior, _ = load_prior(job["prior_dir"], device)
    tokenizer = Tokenizer.load(job["tokenizer_dir"], device)
    mine = list(range(rank, job["batches"], job["processes"]))
    drawn = draw_batches(prior, tokenizer, job["n"], job["batch_size"], job["seed"], job["controls"], job["labels"],
                         job["level"], mine)
    tensors = {IMAGES: torch.cat([images for _, images in drawn])}
    for name in drawn[0][0]:
        tensors[f"codes.{name}"] = torch.cat([codes[name] for codes, _ in drawn])
    return tensors


def draw_on_processes(prior_dir: Path, tokenizer_dir: Path, n: int, batch_size: int, seed: int, controls,
                      labels: Optional[torch.Tensor], level: str, processes: int, accelerator: str) -> list[Batch]:
    """Every batch of the set, in batch order, drawn by ``processes`` spawned processes."""
    sizes = batch_sizes(n, batch_size)
    processes = min(processes, len(sizes))  # a process without a batch would only load the models
    job = {"prior_dir": str(prior_dir), "tokenizer_dir": str(tokenizer_dir), "n": n, "batch_size": batch_size,
           "seed": seed, "controls": controls, "labels": labels, "level": level, "batches": len(sizes),
           "processes": processes, "accelerator": accelerator}
    parts = run_processes(_worker, job, processes, "sampling")
    batches: list[Optional[Batch]] = [None] * len(sizes)
    for rank, part in enumerate(parts):
        offset = 0
        for index in range(rank, len(sizes), processes):
            count = sizes[index]
            codes = {key.removeprefix("codes."): value[offset : offset + count]
                     for key, value in part.items() if key.startswith("codes.")}
            batches[index] = (codes, part[IMAGES][offset : offset + count])
            offset += count
    return batches
