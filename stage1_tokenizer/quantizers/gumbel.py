"""Gumbel-softmax quantization (Jang et al. 2017; the DALL-E dVAE, Ramesh et al. 2021).

A 1x1 projection turns each position into ``K`` logits. In training a relaxed one-hot sample
``softmax((logits + Gumbel noise) / tau)`` mixes the codebook vectors (``hard``: the one-hot of its argmax in the
forward pass, the relaxed sample's gradient in the backward pass). The temperature ``tau`` is annealed from
``tau_start`` to ``tau_end`` over ``anneal_fraction`` of the run. A KL term to the uniform prior,
``KL(softmax(logits) || U(K))``, keeps the posteriors spread over the codebook; like DALL-E's, its weight ramps up
from 0 to ``kl_weight`` (over ``kl_ramp_fraction`` of the run), so the first steps learn to reconstruct before the
prior pulls. At eval the code is the argmax logit.

Measured on MNIST (K=512, 8x8 codes, 300 steps): ``kl_weight`` 5e-4 used 1.4% of the codes, 0.01 used 43% at the
same PSNR; at the default 0.05 a one-epoch run used 75% (with the cosine learning-rate decay of gumbel.yaml;
36% at a constant rate; README, stage-1 table).
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantized, Quantizer, linear_fp32
from .configs import GumbelConfig
from .registry import register_quantizer
from .schedules import RunSchedule, interpolate


def gumbel_noise(like: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))`` shaped like ``like``. Drawn from uniforms because CPU
    ``exponential_`` (what ``F.gumbel_softmax`` uses) is slow: 300 ms against 150 ms for [8192, 512] on one thread."""
    uniform = torch.rand_like(like).clamp_(min=torch.finfo(like.dtype).tiny)  # rand is in [0, 1): only 0 to avoid
    return -torch.log(-torch.log(uniform))


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """A relaxed one-hot sample ``softmax((logits + g) / tau)``; ``hard``: its argmax one-hot in the forward pass,
    the relaxed sample's gradient in the backward pass."""
    soft = F.softmax((logits + gumbel_noise(logits)) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


@register_quantizer(GumbelConfig)
class GumbelQuantizer(RunSchedule, Quantizer):
    def __init__(self, embed_dim: int, config: GumbelConfig):
        super().__init__()
        if config.codebook_size <= 0:
            raise ValueError(f"quantizer.codebook_size must be positive, got {config.codebook_size}")
        if config.kl_weight < 0:
            raise ValueError(f"quantizer.kl_weight must be non-negative, got {config.kl_weight}")
        if not 0.0 <= config.kl_ramp_fraction <= 1.0:
            raise ValueError(f"quantizer.kl_ramp_fraction must be in [0, 1], got {config.kl_ramp_fraction}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [config.codebook_size]
        self.to_logits = nn.Linear(embed_dim, config.codebook_size)  # a 1x1 convolution on channels-last features
        self.codebook = nn.Embedding(config.codebook_size, embed_dim)
        self._init_schedule()
        self._init_usage()

    def temperature(self) -> float:
        c = self.config
        return interpolate(c.tau_start, c.tau_end, self.progress(c.anneal_steps, c.anneal_fraction), c.schedule)

    def kl_weight(self) -> float:
        c = self.config
        if c.kl_ramp_fraction == 0:
            return c.kl_weight
        # With anneal_steps the run's length may be unknown: the ramp is then that share of the annealing steps.
        ramp_steps = max(1, round(c.kl_ramp_fraction * c.anneal_steps)) if c.anneal_steps else 0
        return interpolate(0.0, c.kl_weight, self.progress(ramp_steps, c.kl_ramp_fraction), "cosine")

    def quantize(self, x: torch.Tensor) -> Quantized:
        logits = linear_fp32(self.to_logits, x)
        log_probs = F.log_softmax(logits, dim=-1)
        codebook = self.codebook.weight.float()
        tau, kl_weight = self.temperature(), self.kl_weight()
        if self.training:
            sample = gumbel_softmax(logits, tau, self.config.hard)
            indices = sample.argmax(-1)
            z_q = sample @ codebook
            self.step += 1
        else:
            indices = logits.argmax(-1)
            z_q = F.embedding(indices, codebook)
        # KL(q || uniform) = sum_k q_k log q_k + log K, per position.
        # softmax, not log_probs.exp(): a CPU's exp of arguments under about -87 is 50x slower than its fast path
        kl = (F.softmax(logits, dim=-1) * log_probs).sum(-1).mean() + math.log(self.config.codebook_size)
        stats = {"kl": kl.detach(), "temperature": torch.tensor(tau), "kl_weight": torch.tensor(kl_weight)}
        return Quantized(z_q, indices[:, None], kl_weight * kl, stats)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes[:, 0], self.codebook.weight.float())
