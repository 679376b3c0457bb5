"""The ``ema`` preset: ``vq`` with ``ema: true`` (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019).

Each code is the running average of the encoder outputs assigned to it, with Laplace-smoothed counts; the codes
get no gradient, so the loss is the commitment term only. The preset keeps its own name so that configs and saved
tokenizers that say ``name: ema`` still load; every ``vq`` option works here too, and it builds the ``vq`` class.
"""

from __future__ import annotations

from .registry import register_quantizer
from .configs import EMAConfig
from .vq import VectorQuantizer


register_quantizer(EMAConfig)(VectorQuantizer)
