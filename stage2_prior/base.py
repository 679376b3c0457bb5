"""What every prior shares: the layout of a code grid as tokens, and the class condition with its label dropout.

Codes ``[B, H, W, C]`` carry one vocabulary per channel. They become one joint vocabulary by offsetting channel
``c``'s codes by the sizes of the channels before it, and a sequence in raster order with the channels of a position
interleaved. A model's logits are restricted to a token's own slice by adding :meth:`Prior.vocabulary_slices`.

The class condition is one index per item in ``0 .. num_classes``, where ``num_classes`` is the null class ("no
class"): unconditional data, items without a label, the labels that training drops so the same model learns the
unconditional distribution classifier-free guidance needs, and the unconditional half of guidance.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .config import PriorConfig
from .hub import PriorHub
from .sampling import condition_classes


class Prior(nn.Module, PriorHub):
    """The base of the single-level architectures; ``Prior.from_pretrained`` loads any saved prior (stacked too)."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        if config.grid is None or config.codebook_sizes is None:
            raise ValueError("PriorConfig.grid and codebook_sizes must be filled from the code dataset")
        self.config = config
        self.provenance: dict = {}  # the codes and tokenizer it was trained on, its test NLL; saved beside it
        height, width = config.grid
        sizes = config.codebook_sizes
        self.n_channels = len(sizes)
        self.seq_len = height * width * self.n_channels
        self.code_vocab = sum(sizes)
        self.null_class = config.num_classes
        self.register_buffer("offsets", torch.tensor([0] + sizes[:-1]).cumsum(0), persistent=False)

    # --- layout ------------------------------------------------------------------------------------------------
    def vocabulary_slices(self, width: int) -> torch.Tensor:
        """``[C, width]``: row ``c`` is 0 on channel ``c``'s slice of the joint vocabulary and -inf elsewhere."""
        bias = torch.full((self.n_channels, width), float("-inf"))
        for channel, (start, size) in enumerate(zip(self.offsets.tolist(), self.config.codebook_sizes)):
            bias[channel, start : start + size] = 0.0
        return bias

    def token_slices(self, width: int) -> torch.Tensor:
        """``[L, width]``: :meth:`vocabulary_slices` for every token of the sequence."""
        return self.vocabulary_slices(width)[torch.arange(self.seq_len) % self.n_channels]

    def to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` codes -> ``[B, L]`` tokens in the joint vocabulary."""
        return (codes.long() + self.offsets).flatten(1)

    def to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        height, width = self.config.grid
        return tokens.view(-1, height, width, self.n_channels) - self.offsets

    # --- class condition -----------------------------------------------------------------------------------------
    def classes(self, labels: Optional[torch.Tensor], n: int, device, drop: bool = False) -> torch.Tensor:
        """Class index per item (the null class where there is none); ``drop``: training's label dropout."""
        return condition_classes(labels, self.config.num_classes, n, device,
                                 self.config.label_dropout if drop else 0.0)

    # --- on disk -------------------------------------------------------------------------------------------------
    def described(self) -> dict:
        return {"prior": self.config.model_dump()}

    @classmethod
    def from_described(cls, described: dict) -> "Prior":
        return cls(PriorConfig.from_saved(described["prior"]))
