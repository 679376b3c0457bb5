"""Gaussian stochastic quantization of SQ-VAE (Takida et al. 2022, "SQ-VAE: Variational Bayes on Discrete
Representation with Self-annealed Stochastic Quantization"), with one learnable scalar variance.

The posterior over codes at a position is ``P(k | z) = softmax_k(-||z - b_k||^2 / (2 s^2))``. In training the code
is drawn from it with a Gumbel-softmax relaxation and the decoder sees the relaxed mix of codes; at eval the code is
the nearest one.

Latent loss per position (the latent part of the ELBO): ``||z - z_q||^2 / (2 s^2)`` (the KL between the Gaussian
posterior around ``z`` and the dequantization Gaussian around the drawn code) ``+ sum_k P log P`` (the KL of the
categorical posterior to the uniform prior, up to ``log K``). Both grow ``s^2``; the reconstruction, which prefers a
deterministic assignment, shrinks it: that tension is the self-annealing.

Checked against the authors' code (sony/sqvae, ``vision/``, the ``gaussian_1`` model), which this follows:

- the variance is ``1 + exp(param)`` with ``param`` starting at ``log(init_variance)`` (their ``log(10)`` for
  64-d codes);
- the reconstruction term is ``(D/2) log(MSE)`` over the ``D`` pixels of an image (``recon_loss: gaussian``): the
  decoder variance set to the current error (Takida et al. 2022, AR-ELBO), which is what lets ``s^2`` anneal. vqgen
  divides the whole per-image objective by ``D``, so the latent sum over an image's positions is weighted by
  ``positions / pixels`` (:meth:`bind_image_geometry`, called by the tokenizer); ``loss_weight`` is 1 there;
- the Gumbel temperature decays exponentially (``init * exp(-1e-5 step)``: from 1 to about 0.15 over their 100
  MNIST epochs); here from ``tau_start`` to ``tau_end`` over the run;
- the codebook starts as ``N(0, 1)`` draws.
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantized, Quantizer
from .distances import squared_distances
from .configs import SQConfig
from .registry import register_quantizer
from .schedules import RunSchedule, interpolate


@register_quantizer(SQConfig)
class StochasticQuantizer(RunSchedule, Quantizer):
    def __init__(self, embed_dim: int, config: SQConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        if config.init_variance <= 0:
            raise ValueError(f"quantizer.init_variance must be positive, got {config.init_variance}")
        if config.variance_floor < 0:
            raise ValueError(f"quantizer.variance_floor must be non-negative, got {config.variance_floor}")
        if config.loss_weight < 0:
            raise ValueError(f"quantizer.loss_weight must be non-negative, got {config.loss_weight}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        self.codebook = nn.Embedding(config.codebook_size, embed_dim)  # N(0, 1) init, as in the authors' code
        self.log_param = nn.Parameter(torch.tensor(math.log(config.init_variance)))
        self.positions_per_pixel = 1.0  # set by the tokenizer: the latent sum is per image, like the pixels' sum
        self._init_schedule()
        self._init_usage()

    def bind_image_geometry(self, positions: int, pixels: int) -> None:
        self.positions_per_pixel = positions / pixels

    def variance(self) -> torch.Tensor:
        return self.config.variance_floor + self.log_param.float().exp()

    def temperature(self) -> float:
        c = self.config
        return interpolate(c.tau_start, c.tau_end, self.progress(c.anneal_steps, c.anneal_fraction), c.schedule)

    def quantize(self, x: torch.Tensor) -> Quantized:
        codebook = self.codebook.weight.float()
        variance = self.variance()
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
        # - entropy of P(k | z); softmax rather than log_probs.exp(), whose far-negative arguments are slow on a CPU
        discrete_kl = (F.softmax(logits, dim=-1) * log_probs).sum(-1).mean()
        loss = self.config.loss_weight * self.positions_per_pixel * (continuous_kl + discrete_kl)
        stats = {"continuous_kl": continuous_kl.detach(), "discrete_kl": discrete_kl.detach(),
                 "variance": variance.detach(), "temperature": torch.tensor(tau)}
        return Quantized(z_q, indices[:, None], loss, stats)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes[:, 0], self.codebook.weight.float())
