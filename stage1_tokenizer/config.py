"""Architecture config of a tokenizer: everything ``Tokenizer.load`` needs to rebuild it, saved as config.json."""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from .quantizers import QuantizerConfig, VQConfig, parse_quantizer_config


class TokenizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: Literal["vqvae", "vqvae2"] = "vqvae"  # vqvae2: top and bottom code levels (Razavi et al. 2019)
    network: Literal["deepmind", "dalle"] = "deepmind"  # encoder/decoder flavour (residual VQ-VAE or DALL-E dVAE)
    recon_loss: Literal["mse", "l1", "gaussian", "logit_laplace"] = "mse"  # gaussian: 0.5 log MSE (sq's objective)
    bounded_output: bool = True  # the loss sees the output clamped to [-1, 1] (straight-through): exact blacks
    in_channels: PositiveInt = 1  # filled from the dataset by the pipeline
    image_size: PositiveInt = 32  # filled from the dataset by the pipeline
    hidden_channels: PositiveInt = 64
    res_channels: PositiveInt = 32
    n_res_blocks: int = Field(2, ge=0)
    downsample: PositiveInt = 4  # a power of two: each halving is one strided conv
    embed_dim: PositiveInt = 64
    top_downsample: PositiveInt = 2  # vqvae2 only: the top grid is this much coarser than the bottom grid
    # k-means init and dead-code restarts: without them plain VQ leaves most of its codebook unused.
    quantizer: QuantizerConfig = Field(default_factory=lambda: VQConfig(codebook_size=512, beta=0.25, kmeans_init=True,
                                                                        restart=True))

    def pixels(self) -> int:
        """Pixel values per image (what a per-image likelihood sums over)."""
        return self.in_channels * self.image_size**2

    @field_validator("downsample", "top_downsample")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (1, 2, 4, 8, ...), got {value}")
        return value

    @field_validator("quantizer", mode="before")
    @classmethod
    def _quantizer_from_mapping(cls, value: Any) -> Any:
        # Parsed before pydantic's own pass so that a mistake reads as one sentence naming the option and the
        # quantizer (pydantic's would name the union's tag and leave unknown names or options unlisted).
        return parse_quantizer_config(value)

    @model_validator(mode="after")
    def _sq_objective(self) -> "TokenizerConfig":
        if self.quantizer.name == "sq" and self.recon_loss != "gaussian":
            warnings.warn(f"quantizer sq with recon_loss {self.recon_loss!r}: SQ-VAE's variance self-anneals only "
                          f"against recon_loss: gaussian (the authors' objective); configs/tokenizer/sq.yaml sets it",
                          stacklevel=2)
        return self
