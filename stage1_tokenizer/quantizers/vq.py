"""Vector quantization (van den Oord et al. 2017): nearest codebook vector, codebook loss and commitment.

Options beyond the paper, each off by default:

- ``cosine``: l2-normalise encoder outputs and codes, so the nearest code is the one at the smallest angle;
- ``codebook_dim``: look codes up in a small space (a linear map per position, i.e. a 1x1 convolution, in and
  out), which with ``cosine`` is the factorised, normalised lookup of ViT-VQGAN (Yu et al. 2022);
- ``ema``: codes learned as EMAs of their assigned encoder outputs (commitment loss only), ``kmeans_init`` and
  ``restart`` (dead-code restart): see :mod:`.codebook`;
- ``rotation_trick``: the gradient estimator of :mod:`.rotation` instead of straight-through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantized, Quantizer, linear_fp32, straight_through
from .codebook import Codebook
from .configs import VQConfig
from .registry import register_quantizer
from .rotation import rotate_onto_codes


@register_quantizer(VQConfig)
class VectorQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: VQConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        if config.codebook_dim < 0:
            raise ValueError(f"quantizer.codebook_dim must be 0 (off) or positive, got {config.codebook_dim}")
        if config.beta < 0:
            raise ValueError(f"quantizer.beta must be non-negative, got {config.beta}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        lookup_dim = config.codebook_dim or embed_dim
        self.project_in = nn.Linear(embed_dim, lookup_dim) if config.codebook_dim else None
        self.project_out = nn.Linear(lookup_dim, embed_dim) if config.codebook_dim else None
        self.codebook = Codebook(config.codebook_size, lookup_dim, options=config, cosine=config.cosine)
        self._init_usage()

    def _to_lookup_space(self, x: torch.Tensor) -> torch.Tensor:
        if self.project_in is not None:
            x = linear_fp32(self.project_in, x)
        return F.normalize(x, dim=-1) if self.config.cosine else x

    def _from_lookup_space(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.project_out is None else linear_fp32(self.project_out, x)

    def quantize(self, x: torch.Tensor) -> Quantized:
        x = self._to_lookup_space(x)
        indices, quantized = self.codebook(x[None])
        indices, quantized = indices[0], quantized[0]
        loss, codebook_loss, commitment_loss = self.codebook.loss(x, quantized, self.config.beta)

        if self.config.rotation_trick and torch.is_grad_enabled():
            passed = rotate_onto_codes(x, quantized)
        else:
            passed = straight_through(x, quantized)
        stats = {"codebook_loss": codebook_loss.detach(), "commitment_loss": commitment_loss.detach()}
        if self.config.restart:
            stats["restarted_codes"] = torch.tensor(float(self.codebook.restarted_last_step))
        return Quantized(self._from_lookup_space(passed), indices[:, None], loss, stats)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self._from_lookup_space(self.codebook.embed(codes[:, 0][None])[0])
