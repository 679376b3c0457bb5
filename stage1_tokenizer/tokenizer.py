"""``Tokenizer``: a trained tokenizer as a notebook and the Hub see it, whichever network (VQ-VAE, VQ-VAE-2) it is.

``encode`` takes uint8 images or floats in [0, 1] and checks them; ``decode`` gives floats in [0, 1]. The network
inside (``.network``) works in [-1, 1], as training and the pipeline use it; ``Tokenizer.load(dir)`` returns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.core.errors import VqgenError
from pipeline.core.images import checked_images

from .config import TokenizerConfig
from .hub import TokenizerHub
from .vqvae import VQVAE
from .vqvae2 import VQVAE2

ARCHITECTURES = {"vqvae": (VQVAE, TokenizerConfig), "vqvae2": (VQVAE2, TokenizerConfig)}


class Tokenizer(nn.Module, TokenizerHub):
    def __init__(self, network: VQVAE | VQVAE2 | TokenizerConfig | dict):
        """A trained network, or a config for a fresh one."""
        super().__init__()
        self.network = build_tokenizer(network) if isinstance(network, (TokenizerConfig, dict)) else network

    @staticmethod
    def load(directory: str | Path, device: str | torch.device = "cpu") -> VQVAE | VQVAE2:
        """The network a local directory holds, in eval mode: images in [-1, 1], as the pipeline uses it."""
        return Tokenizer.from_directory(directory, device).network

    # --- images <-> codes ------------------------------------------------------------------------------------
    @property
    def config(self) -> TokenizerConfig:
        return self.network.config

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, S, S)``: what one image must be."""
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    def levels(self) -> dict[str, dict]:
        return self.network.levels()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 ``[B, C, S, S]`` or floats in [0, 1] -> codes per level, LongTensors ``[B, H, W, C_codes]``."""
        x = checked_images(images, self.config.in_channels, self.config.image_size)
        return self.network.encode(x.to(self._device()))

    @torch.no_grad()
    def decode(self, codes: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Codes per level (a bare tensor for a one-level tokenizer) -> images, floats in [0, 1] ``[B, C, S, S]``."""
        codes = self._checked_codes(codes)
        return self.network.decode(codes).clamp(-1, 1).add(1).div(2)

    def _device(self) -> torch.device:
        return next(self.network.parameters()).device

    def _checked_codes(self, codes) -> dict[str, torch.Tensor]:
        levels = self.levels()
        if isinstance(codes, torch.Tensor) and len(levels) == 1:
            codes = {next(iter(levels)): codes}
        if not isinstance(codes, dict) or set(codes) != set(levels):
            got = sorted(codes) if isinstance(codes, dict) else type(codes).__name__
            raise VqgenError(f"decode takes codes for the levels {sorted(levels)} (a dict of tensors), got {got}")
        checked = {}
        for name, spec in levels.items():
            level = codes[name]
            shape = [*spec["grid"], len(spec["codebook_sizes"])]
            if level.dim() != 4 or list(level.shape[1:]) != shape or level.is_floating_point():
                raise VqgenError(f"codes[{name!r}] must be integers of shape [B, {', '.join(map(str, shape))}], "
                                 f"got {level.dtype} {list(level.shape)}")
            if ((level < 0) | (level >= torch.tensor(spec["codebook_sizes"], device=level.device))).any():
                raise VqgenError(f"codes[{name!r}] must lie below the codebook sizes {spec['codebook_sizes']} "
                                 f"(per code channel), and be >= 0")
            checked[name] = level.long().to(self._device())
        return checked

    # --- the Hub: the network's files, whichever architecture --------------------------------------------------
    @property
    def provenance(self) -> dict[str, Any]:
        return self.network.provenance

    @provenance.setter
    def provenance(self, value: dict[str, Any]) -> None:
        self.network.provenance = value

    def hub_state_dict(self) -> dict[str, torch.Tensor]:
        return self.network.state_dict()  # the network's keys, as every tokenizer directory has them

    def card_fields(self) -> dict[str, Any]:
        return self.network.card_fields()

    @classmethod
    def from_hub_config(cls, config: dict[str, Any], state, directory: Path) -> "Tokenizer":
        arch = config.get("arch", "vqvae")
        if arch not in ARCHITECTURES:
            raise VqgenError(f"{directory} holds a tokenizer of arch {arch!r}, which this vqgen version does not "
                             f"know ({', '.join(ARCHITECTURES)}); load it with the version that wrote it")
        return cls(ARCHITECTURES[arch][0].from_hub_config(config, state, directory))


def build_tokenizer(config: TokenizerConfig | dict) -> VQVAE:
    """A fresh, untrained tokenizer of the architecture the config names."""
    if isinstance(config, dict):
        model_cls, config_cls = ARCHITECTURES[config.get("arch", "vqvae")]
        return model_cls(config_cls(**config))
    return ARCHITECTURES[config.arch][0](config)
