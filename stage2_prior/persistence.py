"""Priors on disk: ``config.json`` (the architecture, per level for a stacked prior, and where the codes came from),
``model.safetensors`` and a model card, README.md; written and read by the Hub methods of :class:`~.hub.PriorHub`.
These two functions are the pipeline's entry points, with the provenance as an argument and a result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .base import Prior
from .hierarchical import HierarchicalPrior
from .registry import PRIORS  # noqa: F401 (defines every architecture Prior.from_pretrained may build)

__all__ = ["HierarchicalPrior", "Prior", "load_prior", "save_prior"]


def save_prior(prior: Prior | HierarchicalPrior, directory: str | Path, provenance: dict[str, Any]) -> str:
    """``provenance``: the tokenizer's weights sha256 and the code dataset the prior was trained on. Returns the
    sha256 of the weights file."""
    prior.provenance = dict(provenance)
    return prior.write_pretrained(directory)


def load_prior(directory: str | Path, device: str | torch.device = "cpu") -> tuple[Prior | HierarchicalPrior,
                                                                                  dict[str, Any]]:
    """The prior a local directory holds, in eval mode, and its provenance (``tokenizer_sha256``, ``codes``, ...)."""
    prior = Prior.from_directory(directory, device)
    return prior, dict(prior.provenance)
