"""The VQ-VAE tokenizer: encoder -> quantizer -> decoder, saved as config.json + model.safetensors."""

from __future__ import annotations


import torch
from torch import nn

from .config import TokenizerConfig
from .hub import TokenizerHub
from .losses import decoder_channels, to_image
from .networks import NETWORKS
from .quantizers import Quantizer, QuantizerOutput, quantizer_from_config

LEVEL = "codes"  # the name of VQ-VAE's single code level in code datasets


class VQVAE(nn.Module, TokenizerHub):
    """Images in [-1, 1] of shape ``[B, C, S, S]`` <-> one code grid ``[B, S/f, S/f, C_codes]``."""

    arch = "vqvae"

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.provenance: dict = {}  # how it was trained; saved beside the architecture
        c = config
        encoder_cls, decoder_cls = NETWORKS[c.network]
        self.encoder = encoder_cls(c.in_channels, c.hidden_channels, c.res_channels, c.n_res_blocks, c.downsample,
                                   c.embed_dim)
        self.quantizer = quantizer_from_config(c.quantizer, c.embed_dim)
        self.quantizer.bind_image_geometry((c.image_size // c.downsample) ** 2, c.pixels())
        self.decoder = decoder_cls(c.embed_dim, c.hidden_channels, c.res_channels, c.n_res_blocks, c.downsample,
                                   decoder_channels(c.recon_loss, c.in_channels))

    def quantizers(self) -> dict[str, Quantizer]:
        return {LEVEL: self.quantizer}

    def output_to_image(self, output: torch.Tensor) -> torch.Tensor:
        """Decoder output (whose layout depends on the reconstruction loss) -> image in [-1, 1]."""
        return to_image(output, self.config.recon_loss)

    def last_layer(self) -> torch.Tensor:
        """The decoder's output weights, where VQGAN's adaptive weight compares the losses' gradients."""
        return self.decoder.net[-1].weight

    # --- the tokenizer contract -------------------------------------------------------------------------------
    def levels(self) -> dict[str, dict]:
        """Per code level: grid shape and vocabulary size per code channel (what code datasets record)."""
        grid = self.config.image_size // self.config.downsample
        return {LEVEL: {"grid": [grid, grid], "codebook_sizes": list(self.quantizer.codebook_sizes)}}

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        return self.quantizer(self.encoder(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Returns the raw decoder output (see ``output_to_image``) and the quantizer's output."""
        out = self.quantize(x)
        return self.decoder(out.z_q), out

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {LEVEL: self.quantize(x).codes}

    @torch.no_grad()
    def decode(self, codes: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.output_to_image(self.decoder(self.quantizer.decode_codes(codes[LEVEL])))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_to_image(self(x)[0])
