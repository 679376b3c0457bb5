"""What a prior's directory and model card hold, and which class rebuilds a saved prior.

config.json holds the architecture (``prior``, or ``levels`` for a stacked prior) with the provenance beside it
(the tokenizer's weights sha256, the codes, the test NLL, the training fingerprint): the layout run directories have
always had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, get_args

from pipeline.core.errors import VqgenError
from pipeline.core.files import load_weights
from pipeline.core.hub import HubModel, rebuilt
from pipeline.core.model_card import PLACEHOLDER, bullets

from .config import PriorConfig

ARCHS = get_args(PriorConfig.model_fields["arch"].annotation)  # gpt, pixelcnn, maskgit


class PriorHub(HubModel, tags=["vqgen", "image-generation", "discrete-prior"]):
    kind = "prior"
    saved_as: ClassVar[str | None] = None  # the layout a concrete class is rebuilt from: its arch, or "levels"

    def described(self) -> dict[str, Any]:
        """``{"prior": config}``, or ``{"levels": {level: config}}`` for a stacked prior."""
        raise NotImplementedError

    @classmethod
    def from_described(cls, described: dict[str, Any]) -> "PriorHub":
        raise NotImplementedError

    def hub_config(self) -> dict[str, Any]:
        return {**self.described(), **self.provenance}

    @classmethod
    def from_hub_config(cls, config: dict[str, Any], state, directory: Path) -> "PriorHub":
        """Any saved prior when called on ``Prior`` (or this class); only its own kind on a concrete class."""
        provenance = dict(config)
        described = {key: provenance.pop(key) for key in ("levels", "prior") if key in provenance}
        layout = "levels" if "levels" in described else (described.get("prior") or {}).get("arch")
        known = saved_classes()
        if layout not in known:
            raise VqgenError(f"{directory} holds a prior of arch {layout!r}, which this vqgen version does not know "
                             f"({', '.join(known)}); load it with the version that wrote it")
        target = known[layout]
        if cls.saved_as is not None and target is not cls:
            raise VqgenError(f"{directory} holds a {layout} prior, not a {cls.saved_as}; load it with "
                             f"Prior.from_pretrained, which builds whichever prior a directory holds")
        prior = rebuilt(directory, "prior", lambda: target.from_described(described))
        load_weights(prior, state, directory)
        prior.provenance = provenance
        return prior

    def card_fields(self) -> dict[str, Any]:
        described, p = self.described(), self.provenance
        configs = described.get("levels") or {described["prior"].get("level") or "codes": described["prior"]}
        first = next(iter(configs.values()))
        classes = first.get("num_classes") or 0
        grids = ", ".join(f"{name} {'x'.join(map(str, c['grid'] or []))}x{len(c['codebook_sizes'] or [])} "
                          f"(codebook sizes {c['codebook_sizes']})" for name, c in configs.items())
        condition = f"a class-conditional ({classes} classes)" if classes else "an unconditional"
        metrics = {"test NLL (bits per code)": p.get("test_bits_per_code"), **(p.get("metrics") or {})}
        data = {"tokenizer weights sha256": p.get("tokenizer_sha256"), "codes": p.get("codes")}
        return {
            "title": f"vqgen prior: {first['arch']} over {grids}",
            "summary": f"{condition.capitalize()} {first['arch']} prior over the discrete codes of a vqgen tokenizer"
                       f"{' (stacked: each level given the one above)' if len(configs) > 1 else ''}. Sample codes "
                       f"with it and decode them with that tokenizer (its weights sha256 is under Training data).",
            "usage": usage(classes),
            "config": {key: trimmed(value) if key == "prior" else {name: trimmed(c) for name, c in value.items()}
                       for key, value in described.items()},
            "data": bullets(data),
            "metrics": bullets(metrics) if any(v is not None for v in metrics.values()) else "Not recorded.",
            "provenance": bullets(p.get("provenance") or {}),
        }


def trimmed(config: dict[str, Any]) -> dict[str, Any]:
    """A prior config without the sub-sections of the architectures it is not (config.json keeps them)."""
    return {key: value for key, value in config.items() if key == config["arch"] or key not in ARCHS}


def usage(classes: int) -> str:
    labels = f"labels=torch.arange(16) % {classes}, " if classes else ""
    return (f"import torch\nfrom stage1_tokenizer import Tokenizer\nfrom stage2_prior import Prior\n\n"
            f'prior = Prior.from_pretrained("{PLACEHOLDER}")\n'
            f'tokenizer = Tokenizer.from_pretrained("...")  # the tokenizer these codes came from\n'
            f"codes = prior.sample(16, {labels}generator=torch.Generator().manual_seed(0))\n"
            f"images = tokenizer.decode(codes)  # floats in [0, 1]")


def saved_classes() -> dict[str, type[PriorHub]]:
    """Every class a saved prior is rebuilt as, by layout; each is a subclass declaring ``saved_as``, and importing
    ``stage2_prior.persistence`` (or ``from stage2_prior import Prior``) defines them all."""
    found, stack = {}, [PriorHub]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__dict__.get("saved_as"):
            found[cls.saved_as] = cls
    return found
