"""Turning logits into samples: temperature, top-k and top-p (transformers' warpers), seeded draws."""

from __future__ import annotations

from typing import Optional

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def logits_warpers(temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None):
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def draw(logits: torch.Tensor, warpers: LogitsProcessorList, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One token per row of ``logits`` ``[B, V]``, drawn with ``generator`` so a seed fixes the result."""
    logits = warpers(None, logits.float()) if len(warpers) else logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def guide(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (scale 1: conditional, 0: unconditional)."""
    return uncond_logits + scale * (cond_logits - uncond_logits)
