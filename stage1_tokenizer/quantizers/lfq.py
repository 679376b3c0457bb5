"""Lookup-free quantization (Yu et al. 2023, MAGVIT-v2, "Language Model Beats Diffusion").

Each of ``bits`` channels is quantized to its sign, ``-1`` or ``+1`` (straight-through gradient); the code is the
binary number of the signs (bit ``i`` set when channel ``i`` is positive), so the implicit codebook holds
``2^bits`` codes with no lookup. Features of another width are projected to ``bits`` channels and back.

Loss: ``commitment_weight * ||x - sg[q]||^2`` plus an entropy penalty,
``entropy_weight * (sample_entropy_weight * E[H(p(.|x))] - codebook_entropy_weight * H(E[p(.|x)]))``:
each position should commit to one code (low per-sample entropy) while the batch spreads over the codebook
(high entropy of the mean distribution). ``p(c|x)`` is ``softmax(-||x - c||^2 / entropy_temperature)`` over
the ``2^bits`` corners ``c``.

That softmax factorises over bits: ``p(c|x) = prod_i p_i(c_i)`` with ``p_i(+1) = sigmoid(4 x_i / T)``, so the
per-sample entropy is a sum of ``bits`` Bernoulli entropies. The mean distribution does not factorise, but it
is bilinear in the two halves of the bits: with ``A [N, 2^h]`` and ``B [N, 2^(bits-h)]`` the per-position
probabilities of the low and the high half, ``E[p] = A^T B / N``, one ``[2^h, 2^(bits-h)]`` matmul. Neither
step materialises the ``N x 2^bits`` matrix of probabilities. Under DDP the entropies are those of each
process's batch (a loss term, not codebook state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantized, Quantizer, linear_fp32, straight_through
from .configs import LFQConfig
from .registry import register_quantizer


MAX_BITS = 20


def bit_patterns(bits: int, device: torch.device | None = None) -> torch.Tensor:
    """``[2^bits, bits]`` float 0/1 matrix: row ``j`` holds the binary digits of ``j``, least significant first."""
    values = torch.arange(2**bits, device=device)
    return ((values[:, None] >> torch.arange(bits, device=device)) & 1).float()


def lfq_entropies(x: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-sample entropy and entropy of the mean distribution over the ``2^bits`` codes, for ``x [N, bits]``."""
    logits = 4.0 * x.float() / temperature  # log p_i(+1) - log p_i(-1)
    log_on, log_off = F.logsigmoid(logits), F.logsigmoid(-logits)
    sample_entropy = -(log_on.exp() * log_on + log_off.exp() * log_off).sum(-1).mean()

    def half_probabilities(on: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        pattern = bit_patterns(on.shape[-1], on.device)  # [2^h, h]
        return torch.exp(on @ pattern.t() + off @ (1.0 - pattern).t())  # [N, 2^h]

    low = x.shape[-1] // 2
    probs_low = half_probabilities(log_on[:, :low], log_off[:, :low])
    probs_high = half_probabilities(log_on[:, low:], log_off[:, low:])
    mean_probs = probs_low.t() @ probs_high / x.shape[0]  # [2^low, 2^high]; code = low_index + 2^low * high_index
    codebook_entropy = -(mean_probs * torch.log(mean_probs.clamp_min(1e-12))).sum()
    return sample_entropy, codebook_entropy


@register_quantizer(LFQConfig)
class LookupFreeQuantizer(Quantizer):
    def __init__(self, embed_dim: int, config: LFQConfig):
        super().__init__()
        if not 1 <= config.bits <= MAX_BITS:
            # Epoch usage statistics keep one counter per code, so 2^bits must stay modest.
            raise ValueError(f"quantizer.bits must be in 1..{MAX_BITS}, got {config.bits}")
        if config.entropy_temperature <= 0:
            raise ValueError(f"quantizer.entropy_temperature must be positive, got {config.entropy_temperature}")
        self.config = config
        self.embed_dim = embed_dim
        self.codebook_sizes = [2**config.bits]
        self.project_in = nn.Linear(embed_dim, config.bits) if embed_dim != config.bits else None
        self.project_out = nn.Linear(config.bits, embed_dim) if embed_dim != config.bits else None
        self.register_buffer("powers", 2 ** torch.arange(config.bits, dtype=torch.long), persistent=False)
        self._init_usage()

    def _project_out(self, signs: torch.Tensor) -> torch.Tensor:
        return signs if self.project_out is None else linear_fp32(self.project_out, signs)

    def quantize(self, x: torch.Tensor) -> Quantized:
        c = self.config
        if self.project_in is not None:
            x = linear_fp32(self.project_in, x)
        positive = x > 0
        signs = positive.float() * 2.0 - 1.0
        indices = (positive.long() * self.powers).sum(-1, keepdim=True)

        commitment = F.mse_loss(x, signs)
        loss = c.commitment_weight * commitment
        stats = {"commitment_loss": commitment.detach()}
        if c.entropy_weight > 0:
            sample_entropy, codebook_entropy = lfq_entropies(x, c.entropy_temperature)
            penalty = c.sample_entropy_weight * sample_entropy - c.codebook_entropy_weight * codebook_entropy
            loss = loss + c.entropy_weight * penalty
            stats.update(sample_entropy=sample_entropy.detach(), codebook_entropy=codebook_entropy.detach())
        return Quantized(self._project_out(straight_through(x, signs)), indices, loss, stats)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self._project_out(((codes // self.powers) % 2).float() * 2.0 - 1.0)
