"""The prior a code dataset asks for: the config's architecture completed from the codes (and checked against
them), one model or a stack of them per code level, and its NLL on held-out codes."""

from __future__ import annotations

import numpy as np
import torch

from stage2_prior.registry import build_prior

from ..core.code_dataset import CodeDataset
from ..core.errors import VqgenError
from .training_setup import built


def check_same_codes(train: CodeDataset, test: CodeDataset) -> None:
    """A prior trains on one split and is measured on the other: both must come from the same tokenizer."""
    a, b = train.meta["tokenizer"]["weights_sha256"], test.meta["tokenizer"]["weights_sha256"]
    if a != b:
        raise VqgenError(f"{train.directory} was made by the tokenizer with weights sha256 {a}, but {test.directory} "
                         f"by one with {b}; tokenize both splits with the same tokenizer")
    for key in ("grid", "codebook_sizes"):
        if getattr(train, key) != getattr(test, key):
            raise VqgenError(f"{train.directory} has {key} {getattr(train, key)}, but {test.directory} has "
                             f"{getattr(test, key)}; tokenize both splits with the same tokenizer")
    classes = [d.meta.get("dataset", {}).get("classes") for d in (train, test)]
    if train.num_classes and test.num_classes and classes[0] != classes[1]:
        raise VqgenError(f"{train.directory} and {test.directory} name different classes "
                         f"({classes[0][:5]}... vs {classes[1][:5]}...); the labels would not mean the same")


def architecture_for(arch, codes: CodeDataset):
    """``arch`` with the grid, vocabulary, classes and level of ``codes``; sizes the config gives must agree."""
    conditional = arch.class_conditional if arch.class_conditional is not None else codes.num_classes > 0
    if conditional and codes.num_classes == 0:
        raise VqgenError(f"prior.class_conditional is true but {codes.directory} has no labels")
    filled = {"grid": codes.grid, "codebook_sizes": codes.codebook_sizes,
              "num_classes": codes.num_classes if conditional else 0, "level": codes.level}
    for key in ("grid", "codebook_sizes"):
        given = getattr(arch, key)
        if given is not None and list(given) != list(filled[key]):
            raise VqgenError(f"prior.{key} is {given} in the config, but the code dataset {codes.directory} "
                             f"has {filled[key]}; remove prior.{key} or tokenize with a matching tokenizer")
    return arch.model_copy(update=filled)


def build_for(arch, codes: CodeDataset):
    """One prior, or for codes of several levels (VQ-VAE-2) a stack of them."""
    return built("prior", lambda: hierarchical_prior(arch, codes) if codes.stacked else build_prior(arch))


def hierarchical_prior(arch, codes: CodeDataset):
    """VQ-VAE-2 codes: one prior per level, coarse to fine, each finer level conditioned on the one above."""
    from stage2_prior.hierarchical import HierarchicalPrior

    if arch.arch != "gpt":
        raise VqgenError(f"{codes.directory} has several code levels ({', '.join(codes.levels)}); stacked priors "
                         f"are built with prior.arch=gpt, or choose one level with prior.level")
    configs, above = {}, None
    for name, spec in codes.levels.items():
        context = ({"context_level": above, "context_grid": codes.levels[above]["grid"],
                    "context_codebook_sizes": codes.levels[above]["codebook_sizes"]} if above else {})
        configs[name] = arch.model_copy(update={"level": name, "grid": spec["grid"],
                                                "codebook_sizes": spec["codebook_sizes"], **context})
        above = name
    return HierarchicalPrior(configs)


@torch.no_grad()
def evaluate_nll(prior, codes: CodeDataset, batch_size: int = 256) -> float:
    """Mean NLL in bits per code over a code dataset (labels used when the prior is conditional)."""
    prior.eval()
    total, count = 0.0, 0
    for start in range(0, len(codes), batch_size):
        batch, labels = codes.rows(start, start + batch_size)
        size = labels.shape[0]
        total += prior.loss(batch, labels if prior.config.num_classes else None).item() * size
        count += size
    return total / count / np.log(2)
