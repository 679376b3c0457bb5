"""What every prior shares when it samples: class conditions with a null class, classifier-free guidance,
temperature/top-k/top-p (transformers' warpers), seeded draws, and MaskGIT's mask schedules."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# --- logits -> codes -----------------------------------------------------------------------------------------


def logits_warpers(temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None):
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def warp(logits: torch.Tensor, warpers: LogitsProcessorList) -> torch.Tensor:
    """``logits`` ``[B, V]`` after temperature, top-k and top-p (removed entries become -inf)."""
    return warpers(None, logits.float()) if len(warpers) else logits.float()


def draw(logits: torch.Tensor, warpers: LogitsProcessorList, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One token per row of ``logits`` ``[B, V]``, drawn with ``generator`` so a seed fixes the result."""
    probs = torch.softmax(warp(logits, warpers), dim=-1)
    if generator is not None and generator.device != probs.device:
        # A CPU generator (what `vqgen sample` seeds) drawing for a model on the GPU: draw where the generator is.
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def uniform(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """U[0, 1) noise from ``generator`` (on the generator's device), moved to ``device``."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def gumbel_noise(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    # torch.rand is in [0, 1): the clamp keeps log(0) out, so the noise is always finite.
    return -torch.log(-torch.log(uniform(shape, generator, device).clamp_min(1e-20)))


# --- class conditions and classifier-free guidance -----------------------------------------------------------


def condition_classes(labels: Optional[torch.Tensor], num_classes: int, n: int, device,
                      drop_prob: float = 0.0) -> torch.Tensor:
    """Class index per row, where ``num_classes`` is the null class ("no class"): used for unconditional priors,
    ``labels=None``, labels < 0 (items without a label) and the fraction ``drop_prob`` of labels that training
    drops so the same model also learns the unconditional distribution guidance needs."""
    null = torch.full((n,), num_classes, dtype=torch.long, device=device)
    if labels is None or num_classes == 0:
        return null
    labels = labels.to(device).long().view(n)
    if labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got up to {int(labels.max())}")
    keep = labels >= 0
    if drop_prob > 0:
        keep &= torch.rand(n, device=device) >= drop_prob
    return torch.where(keep, labels, null)


def guide(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (scale 1: conditional, 0: unconditional)."""
    return uncond_logits + scale * (cond_logits - uncond_logits)


class Guidance:
    """How ``n`` rows run under classifier-free guidance. Scale 1 runs the conditional rows as they are and scale 0
    runs the null class alone (both exact, one batch of ``n``); any other scale runs the conditional rows and the
    same rows with the null class in one batch of ``2n`` and mixes their logits with ``guide``."""

    def __init__(self, classes: torch.Tensor, null_class: int, scale: float):
        self.scale = scale
        self.doubled = scale not in (0.0, 1.0) and bool((classes != null_class).any())
        if scale == 0.0:
            classes = torch.full_like(classes, null_class)
        elif self.doubled:
            classes = torch.cat([classes, torch.full_like(classes, null_class)])
        self.classes = classes

    def expand(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model inputs for ``self.classes``: the rows twice when guided."""
        return torch.cat([inputs, inputs]) if self.doubled else inputs

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits of the expanded batch -> the ``n`` rows' guided logits (add -inf masks only after this)."""
        if not self.doubled:
            return logits
        cond, uncond = logits.chunk(2)
        return guide(cond, uncond, self.scale)


# --- MaskGIT mask schedules ------------------------------------------------------------------------------------
# schedule(r) is the fraction of tokens masked at progress r in [0, 1]: 1 at r = 0 (all masked), 0 at r = 1.

MASK_SCHEDULES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cosine": lambda r: torch.cos(r * (math.pi / 2)),
    "linear": lambda r: 1 - r,
    "square": lambda r: 1 - r**2,
    "arccos": lambda r: torch.arccos(r) / (math.pi / 2),
}


def mask_fraction(schedule: str, progress: torch.Tensor) -> torch.Tensor:
    return MASK_SCHEDULES[schedule](progress).clamp(0.0, 1.0)


def masked_counts(length: int, steps: int, schedule: str) -> list[int]:
    """How many of ``length`` tokens stay masked after each of ``steps`` decoding steps: ``floor(length *
    schedule(t / steps))``, but every step but the last reveals at least one token and keeps at least one masked
    (as MaskGIT does), and the last step reveals everything."""
    progress = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    targets = torch.floor(length * mask_fraction(schedule, progress)).long().tolist()
    counts, remaining = [], length
    for step, target in enumerate(targets, start=1):
        remaining = 0 if step == steps else max(1, min(remaining - 1, target))
        counts.append(remaining)
    return counts
