"""Prior configs. The code-shape fields are filled from the code dataset at training time and saved with the prior."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

# How many tokens MaskGIT keeps masked as decoding progresses; the functions live in sampling.MASK_SCHEDULES.
MaskSchedule = Literal["cosine", "linear", "square", "arccos"]


class GPTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    dropout: float = Field(0.1, ge=0, lt=1)
    # The exact GELU is cheaper on a CPU; gelu_new (the tanh form) is what priors saved by earlier versions used,
    # and what their configs are read with (PriorConfig.from_saved).
    activation: Literal["gelu", "gelu_new"] = "gelu"

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class PixelCNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_layers: PositiveInt = 8  # gated blocks; the receptive field grows by kernel_size // 2 per block
    channels: PositiveInt = 96  # width of the code embeddings and of both stacks
    kernel_size: PositiveInt = 3

    @model_validator(mode="after")
    def _odd_kernel(self):
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {self.kernel_size}")
        return self


class MaskGITConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    dropout: float = Field(0.1, ge=0, lt=1)
    train_schedule: MaskSchedule = "cosine"  # masking ratio schedule(r), r ~ U(0, 1), in training

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class PriorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: Literal["gpt", "pixelcnn", "maskgit"] = "gpt"
    level: Optional[str] = None  # which code level to model; None: the first (VQ-VAE has one)
    class_conditional: Optional[bool] = None  # None: conditional when the code dataset has labels
    label_dropout: float = Field(0.1, ge=0, le=1)  # labels replaced by the null class in training (for guidance)
    gpt: GPTConfig = Field(default_factory=GPTConfig)
    pixelcnn: PixelCNNConfig = Field(default_factory=PixelCNNConfig)
    maskgit: MaskGITConfig = Field(default_factory=MaskGITConfig)
    # Filled from the code dataset; refused if a code dataset does not match them.
    grid: Optional[list[PositiveInt]] = None
    codebook_sizes: Optional[list[PositiveInt]] = None
    num_classes: int = Field(0, ge=0)
    # Hierarchical codes (VQ-VAE-2): the bottom prior is conditioned on the top level's codes (GPT: a prefix).
    context_level: Optional[str] = None
    context_grid: Optional[list[PositiveInt]] = None
    context_codebook_sizes: Optional[list[PositiveInt]] = None

    @classmethod
    def from_saved(cls, saved: dict) -> "PriorConfig":
        """The config of a saved prior; a GPT saved before ``gpt.activation`` existed ran the tanh GELU."""
        gpt = saved.get("gpt")
        if isinstance(gpt, dict) and "activation" not in gpt:
            saved = {**saved, "gpt": {**gpt, "activation": "gelu_new"}}
        return cls(**saved)


class SampleControls(BaseModel):
    """Sampling controls; each prior uses the ones that fit it."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, gt=0)
    top_k: Optional[PositiveInt] = None
    top_p: Optional[float] = Field(None, gt=0, le=1)
    cfg_scale: float = Field(1.0, ge=0)  # 1: plain conditional; 0: unconditional; >1: guided
    # MaskGIT only: decoding steps, how many tokens stay masked after each, and the Gumbel noise on the
    # confidences that picks which (annealed as choice_temperature * (1 - t/steps)).
    steps: PositiveInt = 8
    schedule: MaskSchedule = "cosine"
    choice_temperature: float = Field(4.5, ge=0)
