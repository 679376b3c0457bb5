"""Priors over several code levels (VQ-VAE-2): one prior for the top level, and one for each finer level
conditioned on the level above it. ``loss`` adds the levels' NLLs weighted by their code counts (so the result is
still nats per code); ``sample`` runs top first, then each finer level given the one above.

Only the GPT prior takes a context level so far (as a prefix of tokens); PixelCNN and MaskGIT model single-level
codes, and the pipeline says so when asked to stack them.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .config import PriorConfig, SampleControls
from .hub import PriorHub
from .registry import build_prior


class HierarchicalPrior(nn.Module, PriorHub):
    saved_as = "levels"

    def __init__(self, configs: dict[str, PriorConfig]):
        super().__init__()
        self.provenance: dict = {}  # as Prior.provenance
        self.order = list(configs)  # coarse to fine; each level after the first names its context level
        self.priors = nn.ModuleDict({name: build_prior(cfg) for name, cfg in configs.items()})
        first = configs[self.order[0]]
        self.config = first  # arch and num_classes, as single-level priors expose them
        self.level_configs = configs
        self.counts = {name: math.prod(cfg.grid) * len(cfg.codebook_sizes) for name, cfg in configs.items()}

    def loss(self, codes: dict[str, torch.Tensor], labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        total = 0.0
        for name in self.order:
            context_name = self.level_configs[name].context_level
            context = codes[context_name] if context_name else None
            kwargs = {"context": context} if context is not None else {}
            total = total + self.priors[name].loss(codes[name], labels, **kwargs) * self.counts[name]
        return total / sum(self.counts.values())

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None, controls: Optional[SampleControls] = None,
               generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        codes: dict[str, torch.Tensor] = {}
        for name in self.order:
            context_name = self.level_configs[name].context_level
            kwargs = {"context": codes[context_name]} if context_name else {}
            codes[name] = self.priors[name].sample(n, labels, controls, generator=generator, **kwargs)
        return codes

    def described(self) -> dict:
        return {"levels": {name: cfg.model_dump() for name, cfg in self.level_configs.items()}}

    @classmethod
    def from_described(cls, described: dict) -> "HierarchicalPrior":
        return cls({name: PriorConfig.from_saved(cfg) for name, cfg in described["levels"].items()})
