"""Soft quantization (soft-to-hard VQ, Agustsson et al. 2017): in training each position becomes the
``softmax(-||z - e_k||^2 / temperature)``-weighted mix of all codes, which is differentiable in both the
encoder output and the codes; at eval it is the nearest code, hard.

A low temperature makes the training mix close to the hard code the decoder sees at eval. The loss adds the
VQ terms toward the nearest code (codebook term, and beta on the encoder term), which shrink that gap from the
other side by keeping encoder outputs near their codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    Quantizer,
    QuantizerOutput,
    batch_perplexity,
    full_precision,
    nearest_code,
    register_quantizer,
    squared_distances,
    to_channels_first,
    to_channels_last,
)
from .codebook import vq_loss_terms


@dataclass
class SoftConfig:
    codebook_size: int = 512
    temperature: float = 1.0  # of softmax(-||z - e||^2 / temperature)
    beta: float = 0.25  # commitment weight on the encoder term ||z - sg[e_nearest]||^2


@register_quantizer("soft", SoftConfig)
class SoftQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: SoftConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        if config.temperature <= 0:
            raise ValueError(f"quantizer.temperature must be positive, got {config.temperature}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        self.codebook = nn.Embedding(config.codebook_size, embed_dim)
        bound = 1.0 / config.codebook_size
        nn.init.uniform_(self.codebook.weight, -bound, bound)
        self._init_usage()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with full_precision(z):
            z_last = to_channels_last(z).float()
            x = z_last.reshape(-1, self.embed_dim)
            codebook = self.codebook.weight.float()
            if self.training:
                distances = squared_distances(x, codebook)  # the whole matrix: the softmax needs every code
                indices = distances.argmin(-1)
                z_q = F.softmax(-distances / self.config.temperature, dim=-1) @ codebook
            else:
                indices = nearest_code(x, codebook)
                z_q = F.embedding(indices, codebook)
            codebook_loss, commitment_loss = vq_loss_terms(x, F.embedding(indices, codebook))
            loss = codebook_loss + self.config.beta * commitment_loss

        codes = indices.view(*z_last.shape[:-1], 1)
        if self.training:
            self.record_usage(codes)
        stats = {
            "codebook_loss": codebook_loss.detach(),
            "commitment_loss": commitment_loss.detach(),
            "perplexity": batch_perplexity(indices, self.config.codebook_size),
        }
        z_q = z_q.view(*z_last.shape[:-1], self.embed_dim)
        return QuantizerOutput(to_channels_first(z_q).to(z.dtype), codes, loss, stats)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return to_channels_first(F.embedding(codes[..., 0], self.codebook.weight.float()))
