"""Priors on disk: ``config.json`` (the architecture, per level for a stacked prior, and where the codes came from)
plus ``model.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.core.files import load_model_dir, load_weights, save_model_dir

from .config import PriorConfig
from .hierarchical import HierarchicalPrior
from .registry import build_prior


def save_prior(prior: nn.Module, directory: str | Path, provenance: dict[str, Any]) -> str:
    """``provenance``: the tokenizer's weights sha256 and the code dataset the prior was trained on."""
    if isinstance(prior, HierarchicalPrior):
        described = {"levels": {name: cfg.model_dump() for name, cfg in prior.level_configs.items()}}
    else:
        described = {"prior": prior.config.model_dump()}
    return save_model_dir(directory, {"kind": "prior", **described, **provenance}, prior.state_dict())


def load_prior(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Returns the prior (eval mode) and its provenance (``tokenizer_sha256``, ``codes``, ...)."""
    config, state = load_model_dir(directory, kind="prior")
    if "levels" in config:
        prior = HierarchicalPrior({name: PriorConfig(**cfg) for name, cfg in config.pop("levels").items()})
    else:
        prior = build_prior(PriorConfig(**config.pop("prior")))
    load_weights(prior, state, directory)
    return prior.to(device).eval(), config
