"""Prior registry (config ``arch`` -> class) and the prior directory format (config.json + model.safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import VqgenError
from pipeline.files import load_model_dir, load_weights, save_model_dir

from .config import PriorConfig
from .gpt import GPTPrior
from .maskgit import MaskGITPrior
from .pixelcnn import PixelCNNPrior

PRIORS: dict[str, type[nn.Module]] = {"gpt": GPTPrior, "pixelcnn": PixelCNNPrior, "maskgit": MaskGITPrior}


def build_prior(config: PriorConfig) -> nn.Module:
    if config.arch not in PRIORS:
        raise VqgenError(f"unknown prior arch {config.arch!r}; choose one of: {', '.join(PRIORS)}")
    return PRIORS[config.arch](config)


def save_prior(prior: nn.Module, directory: str | Path, provenance: dict[str, Any]) -> str:
    """``provenance``: the tokenizer's weights sha256 and the code dataset the prior was trained on."""
    from .hierarchical import HierarchicalPrior

    if isinstance(prior, HierarchicalPrior):
        described = {"levels": {name: cfg.model_dump() for name, cfg in prior.level_configs.items()}}
    else:
        described = {"prior": prior.config.model_dump()}
    return save_model_dir(directory, {"kind": "prior", **described, **provenance}, prior.state_dict())


def load_prior(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Returns the prior (eval mode) and its provenance (``tokenizer_sha256``, ``codes``, ...)."""
    from .hierarchical import HierarchicalPrior

    config, state = load_model_dir(directory, kind="prior")
    if "levels" in config:
        prior = HierarchicalPrior({name: PriorConfig(**cfg) for name, cfg in config.pop("levels").items()})
    else:
        prior = build_prior(PriorConfig(**config.pop("prior")))
    load_weights(prior, state, directory)
    return prior.to(device).eval(), config
