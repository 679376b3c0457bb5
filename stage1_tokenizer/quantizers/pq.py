"""Product VQ (Jegou et al. 2011; grouped VQ in neural codecs): split the ``D`` channels into ``g`` groups and
quantize each group with its own codebook.

Codes are ``[B, H, W, g]``, one per group, so ``g`` codebooks of ``K`` codes stand for ``K^g`` vectors. All groups
are looked up at once with batched fp32 distances. Losses as in VQ (or commitment only with ``ema: true``);
k-means init and dead-code restart run per group (see :mod:`.codebook`).
"""

from __future__ import annotations

import torch

from .base import Quantized, Quantizer, straight_through
from .codebook import Codebook
from .configs import PQConfig
from .registry import register_quantizer


@register_quantizer(PQConfig)
class ProductQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: PQConfig):
        super().__init__()
        if config.codebook_size <= 0 or config.groups <= 0:
            raise ValueError(
                f"quantizer.codebook_size and groups must be positive, got {config.codebook_size}, {config.groups}"
            )
        if embed_dim % config.groups:
            raise ValueError(f"quantizer.groups={config.groups} must divide the embedding dimension {embed_dim}")
        self.config = config
        self.embed_dim = embed_dim
        self.group_dim = embed_dim // config.groups
        self.codebook_sizes = [config.codebook_size] * config.groups
        self.codebook = Codebook(config.codebook_size, self.group_dim, groups=config.groups, options=config)
        self._init_usage()

    def quantize(self, x: torch.Tensor) -> Quantized:
        grouped = x.view(-1, self.config.groups, self.group_dim).transpose(0, 1)  # [g, N, D/g]
        indices, quantized = self.codebook(grouped)
        loss, codebook_loss, commitment_loss = self.codebook.loss(grouped, quantized, self.config.beta)
        joined = quantized.transpose(0, 1).reshape(-1, self.embed_dim)
        stats = {"codebook_loss": codebook_loss.detach(), "commitment_loss": commitment_loss.detach()}
        if self.config.restart:
            stats["restarted_codes"] = torch.tensor(float(self.codebook.restarted_last_step))
        return Quantized(straight_through(x, joined), indices.t(), loss, stats)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        quantized = self.codebook.embed(codes.t())  # [g, N, D/g]
        return quantized.transpose(0, 1).reshape(-1, self.embed_dim)
