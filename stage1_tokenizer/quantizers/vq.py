"""Plain vector quantization (van den Oord et al. 2017): nearest codebook vector, codebook loss and commitment."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    Quantizer,
    QuantizerOutput,
    batch_perplexity,
    nearest_code,
    register_quantizer,
    to_channels_first,
    to_channels_last,
)


@dataclass
class VQConfig:
    codebook_size: int = 512
    beta: float = 0.25  # commitment weight, applied to the encoder term ||z_e - sg[e]||^2


@register_quantizer("vq", VQConfig)
class VectorQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: VQConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        self.codebook = nn.Embedding(config.codebook_size, embed_dim)
        bound = 1.0 / config.codebook_size
        nn.init.uniform_(self.codebook.weight, -bound, bound)
        self._init_usage()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        z_last = to_channels_last(z)
        flat = z_last.reshape(-1, self.embed_dim)
        indices = nearest_code(flat, self.codebook.weight)
        quantized = self.codebook(indices).view_as(z_last)

        # The codebook term moves the codes toward the encoder outputs; the commitment term (weighted by beta)
        # keeps the encoder close to its codes. Each term stops the gradient of the other side.
        codebook_loss = F.mse_loss(quantized.float(), z_last.detach().float())
        commitment_loss = F.mse_loss(z_last.float(), quantized.detach().float())
        loss = codebook_loss + self.config.beta * commitment_loss

        # Straight-through estimator: forward uses the code, backward copies the gradient to the encoder output.
        z_q = z_last + (quantized - z_last).detach()
        codes = indices.view(*z_last.shape[:-1], 1)
        if self.training:
            self.record_usage(codes)
        stats = {
            "codebook_loss": codebook_loss.detach(),
            "commitment_loss": commitment_loss.detach(),
            "perplexity": batch_perplexity(indices, self.config.codebook_size),
        }
        return QuantizerOutput(to_channels_first(z_q), codes, loss, stats)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return to_channels_first(self.codebook(codes[..., 0]))
