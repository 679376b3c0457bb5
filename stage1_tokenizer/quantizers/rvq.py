"""Residual VQ (Zeghidour et al. 2021, SoundStream): each level quantizes what the previous levels left over.

Codes are ``[B, H, W, depth]`` and the features are the sum of one code per level. Each level is a VQ codebook
(gradient-learned, codebook + beta * commitment loss) or, with ``ema: true``, an EMA codebook (commitment only),
with the k-means init and dead-code restart of :mod:`.codebook`. The level losses are summed.

Quantizer dropout (SoundStream): in training, each image is decoded from the first ``n`` levels only, ``n``
uniform in ``1..depth``, with probability ``quantizer_dropout``, so that shallower prefixes of the codes decode
too. Every level still runs on every image, so the collectives of EMA and restart upkeep happen on every process
in the same order whatever depth each process drew.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Quantized, Quantizer, straight_through
from .codebook import Codebook
from .configs import RVQConfig
from .registry import register_quantizer


@register_quantizer(RVQConfig)
class ResidualVectorQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: RVQConfig):
        super().__init__()
        if config.codebook_size <= 0 or config.depth <= 0:
            raise ValueError(
                f"quantizer.codebook_size and depth must be positive, got {config.codebook_size}, {config.depth}"
            )
        if not 0.0 <= config.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer.quantizer_dropout must be in [0, 1], got {config.quantizer_dropout}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size] * config.depth
        self.levels = nn.ModuleList(Codebook(config.codebook_size, embed_dim, options=config)
                                    for _ in range(config.depth))
        self._init_usage()

    def forward(self, z: torch.Tensor):
        self._batch = z.shape[0]  # quantizer dropout draws one depth per image
        return super().forward(z)

    def quantize(self, x: torch.Tensor) -> Quantized:
        residual = x
        level_vectors, level_indices = [], []
        loss = x.new_zeros(())
        commitment_total = x.new_zeros(())
        for level in self.levels:  # a loop over the few levels; each lookup is vectorised over positions
            indices, quantized = level(residual[None])
            indices, quantized = indices[0], quantized[0]
            level_loss, _, commitment_loss = level.loss(residual, quantized, self.config.beta)
            loss = loss + level_loss
            commitment_total = commitment_total + commitment_loss.detach()
            level_vectors.append(quantized)
            level_indices.append(indices)
            # The next level sees the residual with this level's code held constant, so each level's
            # commitment term pulls the encoder toward the codes of all levels up to it.
            residual = residual - quantized.detach()

        stacked = torch.stack(level_vectors)  # [depth, N, D]
        if self.training and self.config.quantizer_dropout > 0:
            stacked = stacked * self._dropout_mask(self._batch, x.shape[0] // self._batch, x.device)
        stats = {"commitment_loss": commitment_total / self.config.depth,
                 "residual_norm": residual.detach().norm(dim=-1).mean()}
        if self.config.restart:
            stats["restarted_codes"] = torch.tensor(float(sum(level.restarted_last_step for level in self.levels)))
        return Quantized(straight_through(x, stacked.sum(0)), torch.stack(level_indices, dim=-1), loss, stats)

    def _dropout_mask(self, batch: int, positions: int, device: torch.device) -> torch.Tensor:
        """``[depth, B * positions, 1]``: level ``l`` is kept for an image when ``l`` is below the image's depth."""
        depth = self.config.depth
        drawn = torch.randint(1, depth + 1, (batch,), device=device)
        truncated = torch.rand(batch, device=device) < self.config.quantizer_dropout
        image_depth = torch.where(truncated, drawn, torch.full_like(drawn, depth))
        keep = torch.arange(depth, device=device)[:, None] < image_depth[None, :]  # [depth, B]
        return keep.repeat_interleave(positions, dim=1).unsqueeze(-1).float()

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return sum(level.embed(codes[None, :, i])[0] for i, level in enumerate(self.levels))
