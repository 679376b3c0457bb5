"""``Tokenizer.load(dir)``: rebuild whichever tokenizer a directory holds, from its config.json alone."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.core.files import load_model_dir, load_weights

from .config import TokenizerConfig
from .vqvae import VQVAE
from .vqvae2 import VQVAE2

ARCHITECTURES = {"vqvae": (VQVAE, TokenizerConfig), "vqvae2": (VQVAE2, TokenizerConfig)}


class Tokenizer:
    @staticmethod
    def load(directory: str | Path, device: str | torch.device = "cpu") -> VQVAE:
        config, state = load_model_dir(directory, kind="tokenizer")
        config.pop("provenance", None)
        model = build_tokenizer(config)
        load_weights(model, state, directory)
        return model.to(device).eval()


def build_tokenizer(config: TokenizerConfig | dict) -> VQVAE:
    """A fresh, untrained tokenizer of the architecture the config names."""
    if isinstance(config, dict):
        model_cls, config_cls = ARCHITECTURES[config.get("arch", "vqvae")]
        return model_cls(config_cls(**config))
    return ARCHITECTURES[config.arch][0](config)
