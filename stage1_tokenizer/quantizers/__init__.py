"""Quantizers of the VQ-VAE family, one per file, each registered under its config name.

Importing this package registers them all; ``build_quantizer(name, embed_dim, options)`` builds one.
"""

from .base import QUANTIZERS, Quantizer, QuantizerOutput, build_quantizer, make_quantizer_config, register_quantizer
from . import vq  # noqa: F401  (registers "vq")

__all__ = ["QUANTIZERS", "Quantizer", "QuantizerOutput", "build_quantizer", "make_quantizer_config", "register_quantizer"]
