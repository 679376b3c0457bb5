"""What a tokenizer's directory and model card hold: its architecture config with the provenance beside it (the
layout run directories have always had), and a card stating the config, the training data and the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pipeline.core.errors import VqgenError
from pipeline.core.files import load_weights
from pipeline.core.hub import HubModel, rebuilt
from pipeline.core.model_card import PLACEHOLDER, bullets

from .config import TokenizerConfig

USAGE = f"""from stage1_tokenizer import Tokenizer

tokenizer = Tokenizer.from_pretrained("{PLACEHOLDER}")
codes = tokenizer.encode(images)  # uint8 [B, C, S, S], or floats in [0, 1]
reconstructions = tokenizer.decode(codes)  # floats in [0, 1]"""


class TokenizerHub(HubModel, tags=["vqgen", "image-tokenizer", "vq-vae"]):
    """The Hub side of the tokenizer networks (``config``: a TokenizerConfig, ``provenance``: a dict)."""

    kind = "tokenizer"
    arch: ClassVar[str]  # the config's arch that each network class builds

    def save(self, directory: str | Path, provenance: dict | None = None) -> str:
        """``save_pretrained`` with the provenance (how it was trained: data, steps, the step fingerprint) given here,
        as the pipeline saves; returns the sha256 of the weights file."""
        self.provenance = dict(provenance or {})
        return self.write_pretrained(directory)

    def hub_config(self) -> dict[str, Any]:
        return {**self.config.model_dump(), "provenance": self.provenance}

    @classmethod
    def from_hub_config(cls, config: dict[str, Any], state, directory: Path):
        config = dict(config)
        provenance = config.pop("provenance", {})
        if config.get("arch", "vqvae") != cls.arch:
            raise VqgenError(f"{directory} holds a {config.get('arch')} tokenizer, not a {cls.arch}; load it with "
                             f"Tokenizer.from_pretrained, which builds whichever architecture a directory holds")
        model = rebuilt(directory, "tokenizer", lambda: cls(TokenizerConfig(**config)))
        load_weights(model, state, directory)
        model.provenance = provenance
        return model

    def card_fields(self) -> dict[str, Any]:
        c, p = self.config, self.provenance
        levels = "; ".join(f"`{name}`: {'x'.join(map(str, spec['grid']))} positions, codebook sizes "
                           f"{spec['codebook_sizes']}" for name, spec in self.levels().items())
        training = {"epochs": p.get("epochs"), "steps": p.get("steps"), "fingerprint": p.get("fingerprint")}
        return {
            "title": f"vqgen tokenizer: {c.arch}, {c.quantizer.name} quantizer, "
                     f"{c.in_channels}x{c.image_size}x{c.image_size} images",
            "summary": f"A {c.arch} image tokenizer trained with vqgen: each {c.in_channels}x{c.image_size}x"
                       f"{c.image_size} image becomes one code grid per level ({levels}), and codes decode back to an image.",
            "usage": USAGE,
            "config": c.model_dump(),
            "data": bullets(p["data"]) if p.get("data") else "Not recorded (saved outside `vqgen tokenizer train`).",
            "metrics": bullets(p["metrics"]) if p.get("metrics") else (
                "Not recorded with the weights. `vqgen tokenizer eval` measures MSE, PSNR, SSIM and code usage on "
                "the test split, and `vqgen fid` the rFID of reconstructions, under the protocol below."),
            "provenance": bullets(training),
        }

