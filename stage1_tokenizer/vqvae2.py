"""VQ-VAE-2 (Razavi et al. 2019): a coarse ``top`` code grid for global structure and a finer ``bottom`` grid for
detail, the bottom quantized conditioned on the decoded top.

    x --enc_b--> h_b (1/f) --enc_t--> h_t (1/(f*t)) --quant_t--> q_t --dec_t--> top features at 1/f
    [h_b, top features] --1x1--> quant_b --> q_b ;  decoder([upsample(q_t), q_b]) --> x
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import TokenizerConfig
from .hub import TokenizerHub
from .losses import decoder_channels, to_image
from .networks import NETWORKS
from .quantizers import Quantizer, quantizer_from_config


@dataclass
class LevelsOutput:
    """The two levels' quantizer outputs folded into what training needs (loss, stats) plus the codes."""

    loss: torch.Tensor
    codes: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def _upsampler(channels: int, factor: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(int(math.log2(factor))):
        layers.append(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1))
        if i < int(math.log2(factor)) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers) if layers else nn.Sequential(nn.Identity())


class VQVAE2(nn.Module, TokenizerHub):
    arch = "vqvae2"

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = c = config
        self.provenance: dict = {}  # how it was trained; saved beside the architecture
        encoder_cls, decoder_cls = NETWORKS[c.network]
        hidden, res, blocks = c.hidden_channels, c.res_channels, c.n_res_blocks
        self.encoder_bottom = encoder_cls(c.in_channels, hidden, res, blocks, c.downsample, hidden)
        self.encoder_top = encoder_cls(hidden, hidden, res, blocks, c.top_downsample, c.embed_dim)
        self.quantizer_top = quantizer_from_config(c.quantizer, c.embed_dim)
        self.decoder_top = decoder_cls(c.embed_dim, hidden, res, blocks, c.top_downsample, c.embed_dim)
        self.pre_bottom = nn.Conv2d(hidden + c.embed_dim, c.embed_dim, 1)
        self.quantizer_bottom = quantizer_from_config(c.quantizer, c.embed_dim)
        bottom_grid = c.image_size // c.downsample
        self.quantizer_bottom.bind_image_geometry(bottom_grid**2, c.pixels())
        self.quantizer_top.bind_image_geometry((bottom_grid // c.top_downsample) ** 2, c.pixels())
        self.upsample_top = _upsampler(c.embed_dim, c.top_downsample)
        self.decoder = decoder_cls(2 * c.embed_dim, hidden, res, blocks, c.downsample,
                                   decoder_channels(c.recon_loss, c.in_channels))

    # --- the tokenizer contract -------------------------------------------------------------------------------
    def quantizers(self) -> dict[str, Quantizer]:
        return {"top": self.quantizer_top, "bottom": self.quantizer_bottom}

    def levels(self) -> dict[str, dict]:
        bottom = self.config.image_size // self.config.downsample
        top = bottom // self.config.top_downsample
        return {"top": {"grid": [top, top], "codebook_sizes": list(self.quantizer_top.codebook_sizes)},
                "bottom": {"grid": [bottom, bottom], "codebook_sizes": list(self.quantizer_bottom.codebook_sizes)}}

    def output_to_image(self, output: torch.Tensor) -> torch.Tensor:
        return to_image(output, self.config.recon_loss)

    def last_layer(self) -> torch.Tensor:
        """The decoder's output weights (VQGAN's adaptive weight)."""
        return self.decoder.net[-1].weight

    def _decode_latents(self, z_top: torch.Tensor, z_bottom: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([self.upsample_top(z_top), z_bottom], dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, LevelsOutput]:
        h_bottom = self.encoder_bottom(x)
        top = self.quantizer_top(self.encoder_top(h_bottom))
        bottom = self.quantizer_bottom(self.pre_bottom(torch.cat([h_bottom, self.decoder_top(top.z_q)], dim=1)))
        stats = {f"top/{k}": v for k, v in top.stats.items()} | {f"bottom/{k}": v for k, v in bottom.stats.items()}
        out = LevelsOutput(top.loss + bottom.loss, {"top": top.codes, "bottom": bottom.codes}, stats)
        return self._decode_latents(top.z_q, bottom.z_q), out

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self(x)[1].codes

    @torch.no_grad()
    def decode(self, codes: dict[str, torch.Tensor]) -> torch.Tensor:
        z_top = self.quantizer_top.decode_codes(codes["top"])
        z_bottom = self.quantizer_bottom.decode_codes(codes["bottom"])
        return self.output_to_image(self._decode_latents(z_top, z_bottom))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_to_image(self(x)[0])
