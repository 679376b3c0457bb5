"""Prior registry: config ``arch`` -> class."""

from __future__ import annotations

from torch import nn

from pipeline.core.errors import VqgenError

from .config import PriorConfig
from .gpt import GPTPrior
from .maskgit import MaskGITPrior
from .pixelcnn import PixelCNNPrior

PRIORS: dict[str, type[nn.Module]] = {"gpt": GPTPrior, "pixelcnn": PixelCNNPrior, "maskgit": MaskGITPrior}


def build_prior(config: PriorConfig) -> nn.Module:
    if config.arch not in PRIORS:
        raise VqgenError(f"unknown prior arch {config.arch!r}; choose one of: {', '.join(PRIORS)}")
    return PRIORS[config.arch](config)
