"""Codebook usage from code counts: the one place that counts codes per channel and turns counts into perplexity,
share of codes used and dead codes (training epochs, validation, ``tokenizer eval``)."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def count_codes(counts: torch.Tensor, codes: torch.Tensor, codebook_sizes: list[int]) -> None:
    """Add codes ``[..., C]`` to ``counts [sum of codebook sizes]``, in place, channel by channel."""
    flat = codes.reshape(-1, codes.shape[-1])
    offset = 0
    for channel, size in enumerate(codebook_sizes):
        counts[offset : offset + size] += torch.bincount(flat[:, channel], minlength=size).to(counts)
        offset += size


def usage_figures(counts: torch.Tensor, codebook_sizes: list[int]) -> dict[str, float]:
    """Perplexity and share of codes used (averaged over the code channels that saw codes) and dead codes (summed
    over them); empty when no channel saw a code."""
    perplexities, usages, dead = [], [], 0
    offset = 0
    for size in codebook_sizes:
        part = counts[offset : offset + size].double().cpu()
        offset += size
        total = part.sum()
        if total <= 0:
            continue
        probs = part[part > 0] / total
        perplexities.append(math.exp(-(probs * probs.log()).sum().item()))
        usages.append((part > 0).double().mean().item())
        dead += int((part == 0).sum())
    if not perplexities:
        return {}
    return {"perplexity": sum(perplexities) / len(perplexities), "usage": sum(usages) / len(usages),
            "dead_codes": dead}
