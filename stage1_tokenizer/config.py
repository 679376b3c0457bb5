"""Architecture config of a tokenizer: everything ``Tokenizer.load`` needs to rebuild it, saved as config.json."""

from __future__ import annotations

import warnings
from typing import Any, Literal, Optional

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


class TokenizerLossConfig(BaseModel):
    """The VQGAN terms added to the reconstruction loss: LPIPS, a PatchGAN discriminator, an EMA of the weights.
    Training options, not part of the saved architecture; all off by default (a plain VQ-VAE objective)."""

    model_config = ConfigDict(extra="forbid")

    perceptual_weight: float = Field(0.0, ge=0)  # LPIPS; taming's VQGAN uses 1.0
    lpips_weights: Optional[str] = None  # a local VGG16 file; None: $VQGEN_LPIPS_WEIGHTS, else torchvision's download
    adversarial_weight: float = Field(0.0, ge=0)  # > 0 adds the discriminator; taming's configs use 0.8
    adversarial_loss: Literal["hinge", "non_saturating"] = "hinge"
    adaptive_weight: bool = True  # scale the adversarial term by VQGAN's gradient-norm ratio at the decoder's output
    # The discriminator starts after this share of the run (or disc_start_steps > 0 steps): before, the decoder
    # learns to reconstruct, and an early discriminator only pushes it towards noise.
    disc_start_fraction: float = Field(0.25, ge=0, le=1)
    disc_start_steps: int = Field(0, ge=0)
    disc_channels: PositiveInt = 64
    disc_layers: PositiveInt = 3
    disc_norm: Literal["batch", "group", "none"] = "batch"
    disc_lr: Optional[float] = Field(None, gt=0)  # None: the tokenizer's learning rate
    lecam_weight: float = Field(0.0, ge=0)  # LeCam regularisation of the discriminator (Tseng et al. 2021)
    lecam_decay: float = Field(0.99, ge=0, lt=1)
    ema_decay: float = Field(0.0, ge=0, lt=1)  # > 0: evaluate and save an EMA copy of the tokenizer's weights

    @property
    def adversarial(self) -> bool:
        return self.adversarial_weight > 0
