"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of ``len(levels)`` channels is squashed into a bounded interval and rounded to one of ``levels[i]`` integers
(straight-through gradient); the grid of all combinations is an implicit codebook of ``prod(levels)`` codes, with
no codebook vectors, no codebook loss and no collapse. One integer code per position: the mixed-radix number whose
digits are the per-channel integers. Features of another width are projected to ``len(levels)`` and back.

Bounding: with ``h = (L - 1)(1 + eps) / 2`` and, for even ``L``, an offset of 1/2 (so that the ``L`` integers
``-L/2 .. L/2 - 1`` are reachable while 0 still maps to 0), ``bound(x) = h tanh(x + atanh(offset / h)) - offset``.
The rounded integers are divided by ``L // 2`` so the quantized values lie in ``[-1, 1]``.
"""

from __future__ import annotations

import math
import torch
from torch import nn

from .base import Quantized, Quantizer, linear_fp32, straight_through
from .configs import FSQConfig
from .registry import register_quantizer


@register_quantizer(FSQConfig)
class FiniteScalarQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: FSQConfig):
        super().__init__()
        levels = list(config.levels)
        if not levels or any(not isinstance(n, int) or n < 2 for n in levels):
            raise ValueError(f"quantizer.levels must be a non-empty list of integers >= 2, got {config.levels}")
        size = math.prod(levels)
        if size > 2**20:
            # Epoch usage statistics keep one counter per code; the FSQ paper stays below 2^16 codes.
            raise ValueError(f"quantizer.levels {levels} give {size} codes; keep the product at most 2^20")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [size]
        n = len(levels)
        self.project_in = nn.Linear(embed_dim, n) if embed_dim != n else None
        self.project_out = nn.Linear(n, embed_dim) if embed_dim != n else None

        levels_t = torch.tensor(levels, dtype=torch.float32)
        half_range = (levels_t - 1) * (1 + config.eps) / 2
        offset = (levels_t % 2 == 0).float() * 0.5
        # Constants of the method, rebuilt from the config: not saved with the weights.
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("half_range", half_range, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_range), persistent=False)
        self.register_buffer("half_width", torch.floor(levels_t / 2), persistent=False)
        radix = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), dim=0)
        self.register_buffer("radix", radix, persistent=False)
        self._init_usage()

    def bound(self, x: torch.Tensor) -> torch.Tensor:
        return self.half_range * torch.tanh(x + self.shift) - self.offset

    def _project_out(self, quantized: torch.Tensor) -> torch.Tensor:
        return quantized if self.project_out is None else linear_fp32(self.project_out, quantized)

    def quantize(self, x: torch.Tensor) -> Quantized:
        if self.project_in is not None:
            x = linear_fp32(self.project_in, x)
        bounded = self.bound(x)
        integers = torch.round(bounded)
        quantized = straight_through(bounded, integers) / self.half_width
        indices = ((integers + self.half_width).long() * self.radix).sum(-1, keepdim=True)
        return Quantized(self._project_out(quantized), indices, x.new_zeros(()))  # no loss: nothing to learn

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        digits = (codes // self.radix) % self.levels.long()
        return self._project_out((digits.float() - self.half_width) / self.half_width)
