"""Gaussian stochastic quantization of SQ-VAE (Takida et al. 2022, "SQ-VAE: Variational Bayes on Discrete
Representation with Self-annealed Stochastic Quantization"), with one learnable scalar variance.

The posterior over codes at a position is ``P(k | z) = softmax_k(-||z - b_k||^2 / (2 s^2))``, with ``s^2``
learned. In training the code is drawn from it with a Gumbel-softmax relaxation (temperature annealed from
``tau_start`` to ``tau_end``) and the decoder sees the relaxed mix of codes; at eval the code is the nearest one.

Loss (the latent part of the paper's ELBO), per position:
``||z - z_q||^2 / (2 s^2)`` (the KL between the Gaussian posterior around ``z`` and the dequantization Gaussian
around the drawn code ``z_q``) ``+ sum_k P log P`` (the KL of the categorical posterior to the uniform prior,
up to the constant ``log K``). Both terms grow ``s^2``; the reconstruction, which prefers a deterministic
assignment, shrinks it: that tension is the self-annealing. The paper sums the ELBO over all latent and pixel
dimensions; here the latent terms are averaged over positions and weighted by ``loss_weight`` so that they sit
beside the pipeline's per-pixel mean MSE (``loss_weight ~ 2 sigma_x^2 * positions / pixels``; 0.01 suits a
decoder variance ``sigma_x^2 ~ 0.08`` at downsample 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    Quantizer,
    QuantizerOutput,
    batch_perplexity,
    full_precision,
    register_quantizer,
    squared_distances,
    to_channels_first,
    to_channels_last,
)
from .schedules import annealed, check_schedule


@dataclass
class SQConfig:
    codebook_size: int = 512
    init_variance: float = 1.0  # initial s^2; the official code starts large (about 10 for 64-d codes)
    tau_start: float = 1.0  # Gumbel-softmax temperature of the stochastic assignment
    tau_end: float = 0.5
    anneal_steps: int = 10000
    schedule: str = "exp"  # exp | linear | cosine
    loss_weight: float = 0.01  # weight of the per-position latent loss beside a per-pixel mean reconstruction


@register_quantizer("sq", SQConfig)
class StochasticQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: SQConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        if config.init_variance <= 0:
            raise ValueError(f"quantizer.init_variance must be positive, got {config.init_variance}")
        check_schedule(config.schedule, config.tau_start, config.tau_end, config.anneal_steps)
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        self.codebook = nn.Embedding(config.codebook_size, embed_dim)  # N(0, 1) init, as in the paper's code
        self.log_variance = nn.Parameter(torch.tensor(math.log(config.init_variance)))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._init_usage()

    def temperature(self) -> float:
        c = self.config
        return annealed(c.tau_start, c.tau_end, int(self.step), c.anneal_steps, c.schedule)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with full_precision(z):
            z_last = to_channels_last(z).float()
            x = z_last.reshape(-1, self.embed_dim)
            codebook = self.codebook.weight.float()
            variance = self.log_variance.float().exp()
            logits = -squared_distances(x, codebook) / (2.0 * variance)
            log_probs = F.log_softmax(logits, dim=-1)
            tau = self.temperature()
            if self.training:
                assignment = F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)
                indices = assignment.argmax(-1)
                z_q = assignment @ codebook
                self.step += 1
            else:
                indices = logits.argmax(-1)  # the nearest code
                z_q = F.embedding(indices, codebook)
            continuous_kl = (x - z_q).pow(2).sum(-1).mean() / (2.0 * variance)
            discrete_kl = (log_probs.exp() * log_probs).sum(-1).mean()  # - entropy of P(k | z)
            loss = self.config.loss_weight * (continuous_kl + discrete_kl)

        codes = indices.view(*z_last.shape[:-1], 1)
        if self.training:
            self.record_usage(codes)
        stats = {
            "continuous_kl": continuous_kl.detach(),
            "discrete_kl": discrete_kl.detach(),
            "variance": variance.detach(),
            "temperature": torch.tensor(tau),
            "perplexity": batch_perplexity(indices, self.config.codebook_size),
        }
        z_q = z_q.view(*z_last.shape[:-1], self.embed_dim)
        return QuantizerOutput(to_channels_first(z_q).to(z.dtype), codes, loss, stats)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return to_channels_first(F.embedding(codes[..., 0], self.codebook.weight.float()))
