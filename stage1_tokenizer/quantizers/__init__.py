"""Quantizers of the VQ-VAE family, one per file, each registered under its config name.

Their config models (:mod:`.configs`) load without torch; each quantizer class loads with its module on first
use. A quantizer's config is one of the models of ``QuantizerConfig``, a pydantic union discriminated by ``name``;
``parse_quantizer_config({name: ..., **options})`` picks and fills it, ``quantizer_from_config(config, embed_dim)``
builds the quantizer, ``build_quantizer(name, embed_dim, options)`` does both.

- ``vq``: nearest code, codebook + beta * commitment loss (options: EMA-learned codes, cosine, low-dim lookup,
  k-means init, dead-code restarts, rotation trick)
- ``ema``: preset, ``vq`` with ``ema: true``: codes learned as EMAs of their assigned outputs (commitment loss only)
- ``gumbel``: Gumbel-softmax over codebook logits with an annealed temperature and a KL to uniform
- ``fsq``: finite scalar quantization (bounded, rounded channels; an implicit grid codebook)
- ``lfq``: lookup-free quantization (sign bits) with an entropy penalty
- ``rvq``: residual VQ, one code per level, with optional quantizer dropout and EMA-learned codes
- ``pq``: product VQ, one code per channel group, with optional EMA-learned codes
- ``sq``: SQ-VAE's Gaussian stochastic quantization with a learned variance
- ``soft``: softmax-weighted mix of codes in training, nearest code at eval
"""

from .configs import VQConfig
from .options import QuantizerOptions
from .registry import (build_quantizer, config_union, make_quantizer_config, parse_quantizer_config,
                       quantizer_from_config, register_quantizer)

QuantizerConfig = config_union()  # the union of the built-in config models (no torch needed to check a config)


def __getattr__(name: str):
    # The quantizer classes need torch; they load on first use, not when a config is checked.
    if name in ("Quantizer", "QuantizerOutput"):
        from . import base

        return getattr(base, name)
    if name == "QUANTIZERS":
        from .registry import register_all

        return register_all()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["QUANTIZERS", "Quantizer", "QuantizerConfig", "QuantizerOptions", "QuantizerOutput", "VQConfig",
           "build_quantizer", "make_quantizer_config", "parse_quantizer_config", "quantizer_from_config",
           "register_quantizer"]
