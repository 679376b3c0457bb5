"""``Tokenizer.load(dir)``: rebuild whichever tokenizer a directory holds, from its config.json alone."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.files import load_model_dir

from .config import TokenizerConfig
from .vqvae import VQVAE

ARCHITECTURES = {"vqvae": (VQVAE, TokenizerConfig)}


class Tokenizer:
    @staticmethod
    def load(directory: str | Path, device: str | torch.device = "cpu") -> VQVAE:
        config, state = load_model_dir(directory, kind="tokenizer")
        config.pop("provenance", None)
        model = build_tokenizer(config)
        model.load_state_dict(state)
        return model.to(device).eval()


def build_tokenizer(config: TokenizerConfig | dict) -> VQVAE:
    """A fresh, untrained tokenizer of the architecture the config names."""
    if isinstance(config, dict):
        model_cls, config_cls = ARCHITECTURES[config.get("arch", "vqvae")]
        return model_cls(config_cls(**config))
    return ARCHITECTURES[config.arch][0](config)
