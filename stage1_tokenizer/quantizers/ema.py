"""VQ with an EMA codebook (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019 for VQ-VAE-2).

Each code is the running average of the encoder outputs assigned to it, with Laplace-smoothed counts; the
codes get no gradient, so the loss is the commitment term only (beta on ``||z_e - sg[e]||^2``). Every option
of the ``vq`` quantizer (cosine, codebook_dim, k-means init, dead-code restart, rotation trick) works here too:
the class is the VQ one, built over an EMA-learned :class:`.codebook.Codebook`.
"""

from __future__ import annotations

from typing import Literal

from .registry import register_quantizer
from .vq import VectorQuantizer, VQConfig


class EMAConfig(VQConfig):
    name: Literal["ema"] = "ema"
    decay: float = 0.99  # EMA decay of the per-code counts and sums
    eps: float = 1e-5  # Laplace smoothing of the counts


@register_quantizer(EMAConfig)
class EMAQuantizer(VectorQuantizer):
    uses_ema = True
