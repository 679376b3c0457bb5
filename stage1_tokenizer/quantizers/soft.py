"""Soft quantization (soft-to-hard VQ, Agustsson et al. 2017): in training each position becomes the
``softmax(-||z - e_k||^2 / (temperature * s))``-weighted mix of all codes, which is differentiable in both the
encoder output and the codes; at eval it is the nearest code, hard. ``s`` is the batch's mean squared distance to
the nearest code (``relative_temperature``, detached), so a temperature means the same whatever the encoder's scale;
``s = 1`` gives the absolute temperature of the paper.

A low temperature makes the training mix close to the hard code the decoder sees at eval, so the temperature is
annealed from ``temperature`` to ``temperature_end`` over ``anneal_fraction`` of the run (soft early, when the
mix spreads gradients over the codes; nearly hard for the rest, so the decoder learns the codes it will get). The
loss adds the VQ terms toward the nearest code (codebook term, and beta on the encoder term), which shrink that gap
from the other side by keeping encoder outputs near their codes.

The codes start as k-means centroids of the first training batch (``kmeans_init``). From the usual tiny uniform
init every code is about equally far from a 64-d encoder output, the mix is nearly uniform, one code is nearest to
everything, and training collapses onto it (measured on MNIST: perplexity 1.0 and 10 dB PSNR at eval).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantized, Quantizer
from .codebook import Codebook, vq_loss_terms
from .configs import CodebookOptions, SoftConfig
from .distances import squared_distances
from .registry import register_quantizer
from .schedules import RunSchedule, interpolate


@register_quantizer(SoftConfig)
class SoftQuantizer(RunSchedule, Quantizer):
    def __init__(self, embed_dim: int, config: SoftConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        if config.temperature <= 0 or config.temperature_end <= 0:
            raise ValueError(f"quantizer.temperature and temperature_end must be positive, got "
                             f"{config.temperature} and {config.temperature_end}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        # The shared codebook brings k-means init and dead-code restarts; the lookup here is soft, so only its
        # upkeep is used (its state is saved with the model, like the schedule's step).
        upkeep = CodebookOptions(kmeans_init=config.kmeans_init, kmeans_iters=config.kmeans_iters,
                                 restart=config.restart, dead_code_threshold=config.dead_code_threshold,
                                 usage_decay=config.usage_decay)
        self.codebook = Codebook(config.codebook_size, embed_dim, options=upkeep)
        self._init_schedule()
        self._init_usage()

    def temperature(self) -> float:
        c = self.config
        return interpolate(c.temperature, c.temperature_end, self.progress(c.anneal_steps, c.anneal_fraction),
                           c.schedule)

    def quantize(self, x: torch.Tensor) -> Quantized:
        if self.training:  # k-means init and restarts (identical on every process: counts are reduced)
            self.codebook.upkeep_before_lookup(x.detach().float()[None])
        codebook = self.codebook.vectors()[0]
        tau = self.temperature()
        if self.training:
            distances = squared_distances(x, codebook)  # the whole matrix: the softmax needs every code
            nearest = distances.min(-1)
            indices = nearest.indices
            scale = nearest.values.mean().detach().clamp_min(1e-12) if self.config.relative_temperature else 1.0
            z_q = F.softmax(-distances / (tau * scale), dim=-1) @ codebook
            self.codebook.update_statistics(x.detach().float()[None], indices[None])
            self.step += 1
        else:
            indices = self.codebook.nearest(x[None])[0]
            z_q = F.embedding(indices, codebook)
        codebook_loss, commitment_loss = vq_loss_terms(x, F.embedding(indices, codebook))
        loss = codebook_loss + self.config.beta * commitment_loss
        stats = {"codebook_loss": codebook_loss.detach(), "commitment_loss": commitment_loss.detach(),
                 "temperature": torch.tensor(tau)}
        return Quantized(z_q, indices[:, None], loss, stats)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes[:, 0], self.codebook.vectors()[0])
