"""Prior configs. The code-shape fields are filled from the code dataset at training time and saved with the prior."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


class GPTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class PriorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: Literal["gpt"] = "gpt"
    level: Optional[str] = None  # which code level to model; None: the first (VQ-VAE has one)
    class_conditional: Optional[bool] = None  # None: conditional when the code dataset has labels
    label_dropout: float = Field(0.1, ge=0, le=1)  # labels replaced by the null class in training (for guidance)
    gpt: GPTConfig = Field(default_factory=GPTConfig)
    # Filled from the code dataset; refused if a code dataset does not match them.
    grid: Optional[list[PositiveInt]] = None
    codebook_sizes: Optional[list[PositiveInt]] = None
    num_classes: int = Field(0, ge=0)


class SampleControls(BaseModel):
    """Sampling controls; each prior uses the ones that fit it."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, gt=0)
    top_k: Optional[PositiveInt] = None
    top_p: Optional[float] = Field(None, gt=0, le=1)
    cfg_scale: float = Field(1.0, ge=0)  # 1: plain conditional; 0: unconditional; >1: guided
