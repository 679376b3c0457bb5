"""Sampling in batches whose random draws depend on (seed, batch index) alone: a sample is the same whichever
process draws its batch, so a set drawn by several processes equals the set one process draws."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..core.images import to_uint8

# One batch's codes (a tensor per level) and its decoded images (uint8).
Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


def batch_seed(seed: int, index: int) -> int:
    """Batch 0 keeps ``seed`` itself, so sets of one batch are those drawn before seeds were per batch."""
    return seed if index == 0 else hash((seed, index)) & 0x7FFF_FFFF_FFFF_FFFF


def batch_sizes(n: int, batch_size: int) -> list[int]:
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def draw_batches(prior, tokenizer, n: int, batch_size: int, seed: int, controls, labels: Optional[torch.Tensor],
                 level: str, indices: list[int], advance: Callable[[int], None] = lambda count: None) -> list[Batch]:
    """Batches ``indices`` of the set of ``n`` (labels: the whole set's, or None), in that order."""
    sizes = batch_sizes(n, batch_size)
    out = []
    for index in indices:
        start, count = index * batch_size, sizes[index]
        batch_labels = labels[start : start + count] if labels is not None else None
        generator = torch.Generator().manual_seed(batch_seed(seed, index))  # CPU: draw() moves it where needed
        codes = prior.sample(count, batch_labels, controls, generator=generator)
        codes = codes if isinstance(codes, dict) else {level: codes}  # stacked priors give every level
        codes = {name: value.cpu() for name, value in codes.items()}
        out.append((codes, to_uint8(tokenizer.decode(codes)).cpu()))
        advance(count)
    return out
