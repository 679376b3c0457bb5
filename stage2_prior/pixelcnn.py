"""PixelCNN prior: a gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders") over code embeddings, with a vertical and a horizontal stack so there is no blind spot, and a class
bias in every gate.

Causality comes from shifts, not masks: the vertical stack reads the grid shifted down one row and its kernels
look only up, so at row i it sees rows < i (all columns within reach, the top-right neighbours included); the
horizontal stack reads the grid shifted right one column and its kernels look only left, so at (i, j) it sees
(i, < j); each block feeds the vertical stack into the horizontal one. The output at position p therefore depends
on the codes at positions strictly before p in raster order, and on every such position once enough blocks are
stacked (each block widens the reach by ``kernel_size // 2`` rows and columns).

Several code channels C (residual VQ depth, product VQ groups): a position's input is the sum of one embedding per
channel. The C codes of a position are predicted autoregressively in channel order: channel c's head reads the
trunk's features at p plus (an exclusive cumulative sum of) embeddings of channels < c at p, so the model is an
exact likelihood ``prod_p prod_c p(code[p, c] | codes before p, code[p, < c])``. One joint vocabulary holds each
channel's slice (as in the GPT prior); logits outside a channel's slice are -inf.

Sampling goes position by position, each step batched over the samples. Causality lets it skip most of the
network: the vertical stack runs once per row (its row-i output sees only rows < i, all of them already drawn),
and at each position only the horizontal stack runs, on that row up to that column; then C cheap head
evaluations.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import PriorConfig, SampleControls
from .base import Prior
from .sampling import Guidance, draw, logits_warpers


def shift_down(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(x: torch.Tensor) -> torch.Tensor:
    values, gates = x.chunk(2, dim=1)
    return torch.tanh(values) * torch.sigmoid(gates)


class GatedBlock(nn.Module):
    """One gated layer of both stacks. Inputs are already shifted, so the kernels may include their own row
    (vertical) and column (horizontal). The two halves are separate methods because sampling runs the vertical
    one once per row and the horizontal one once per position."""

    def __init__(self, channels: int, kernel_size: int, n_conditions: int):
        super().__init__()
        self.reach = kernel_size // 2
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.reach + 1, kernel_size))
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, self.reach + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)
        # A per-class bias on each stack's gate inputs; zero at first, so training starts from a shared model.
        self.vertical_class_bias = nn.Embedding(n_conditions, 2 * channels)
        self.horizontal_class_bias = nn.Embedding(n_conditions, 2 * channels)
        nn.init.zeros_(self.vertical_class_bias.weight)
        nn.init.zeros_(self.horizontal_class_bias.weight)

    def vertical_step(self, vertical: torch.Tensor, classes: torch.Tensor):
        """-> (the next vertical stack, what it passes to the horizontal stack at the same rows)."""
        r = self.reach
        v = self.vertical(F.pad(vertical, (r, r, r, 0)))  # rows i-r..i, columns j-r..j+r
        return gate(v + self.vertical_class_bias(classes)[:, :, None, None]), self.vertical_to_horizontal(v)

    def horizontal_step(self, horizontal: torch.Tensor, link: torch.Tensor, classes: torch.Tensor):
        h = self.horizontal(F.pad(horizontal, (self.reach, 0, 0, 0))) + link  # columns j-r..j
        return horizontal + self.horizontal_out(gate(h + self.horizontal_class_bias(classes)[:, :, None, None]))


class PixelCNNPrior(Prior):
    saved_as = "pixelcnn"

    def __init__(self, config: PriorConfig):
        super().__init__(config)
        width = config.pixelcnn.channels
        vocab = self.code_vocab
        # channel_bias[c] is 0 on channel c's slice of the joint vocabulary and -inf elsewhere.
        self.register_buffer("channel_bias", self.vocabulary_slices(vocab), persistent=False)

        self.code_embedding = nn.Embedding(vocab, width)  # a position's input: the sum over its channels
        self.blocks = nn.ModuleList(
            GatedBlock(width, config.pixelcnn.kernel_size, config.num_classes + 1)
            for _ in range(config.pixelcnn.n_layers))
        self.trunk_out = nn.Conv2d(width, width, 1)
        # Heads: channel c of a position sees the trunk's features and the codes of channels < c there.
        self.earlier_channel_embedding = nn.Embedding(vocab, width)
        self.channel_embedding = nn.Parameter(torch.zeros(self.n_channels, width))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, vocab))

    # --- pieces (public for the causality tests) ---------------------------------------------------------------
    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` codes -> ``[B, D, H, W]`` summed channel embeddings."""
        return self.code_embedding(codes + self.offsets).sum(dim=3).permute(0, 3, 1, 2)

    def vertical_links(self, x: torch.Tensor, classes: torch.Tensor) -> list[torch.Tensor]:
        """``[B, D, H, W]`` embeddings -> what the vertical stack feeds each block's horizontal stack; row i's
        links see only rows < i."""
        vertical, links = shift_down(x), []
        for block in self.blocks:
            vertical, link = block.vertical_step(vertical, classes)
            links.append(link)
        return links

    def horizontal_features(self, x: torch.Tensor, links: list[torch.Tensor], classes: torch.Tensor):
        """Embeddings and links of the same rows -> ``[B, rows, W, D]`` features; column j sees columns < j of
        its row and the links."""
        horizontal = shift_right(x)
        for block, link in zip(self.blocks, links):
            horizontal = block.horizontal_step(horizontal, link, classes)
        return self.trunk_out(F.relu(horizontal)).permute(0, 2, 3, 1)

    def trunk(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``[B, D, H, W]`` embeddings -> ``[B, H, W, D]`` features; position p sees only positions before p."""
        return self.horizontal_features(x, self.vertical_links(x, classes), classes)

    def row_links(self, codes: torch.Tensor, row: int, classes: torch.Tensor) -> list[torch.Tensor]:
        """The links of one row, from the codes above it (rows below cannot reach it, so they are cropped)."""
        return [link[:, :, row : row + 1] for link in self.vertical_links(self.embed(codes[:, : row + 1]), classes)]

    def features_at(self, codes: torch.Tensor, links: list[torch.Tensor], row: int, col: int,
                    classes: torch.Tensor) -> torch.Tensor:
        """``trunk(embed(codes))[:, row, col]`` from the row's links and the row's codes left of ``col`` only."""
        x = self.embed(codes[:, row : row + 1, : col + 1])
        return self.horizontal_features(x, [link[..., : col + 1] for link in links], classes)[:, 0, col]

    def channel_logits(self, features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Features ``[..., D]`` and the same positions' codes ``[..., C]`` -> raw logits ``[..., C, V]``, where
        channel c's logits use only the codes of channels < c. Add ``channel_bias`` (after any guidance: it holds
        -inf) to keep each channel in its vocabulary slice."""
        earlier = self.earlier_channel_embedding(codes + self.offsets)
        earlier = earlier.cumsum(dim=-2) - earlier  # exclusive: channel c gets the sum over channels < c
        hidden = features.unsqueeze(-2) + earlier + self.channel_embedding
        return self.head(hidden).float()

    def logits(self, codes: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` codes -> ``[B, H, W, C, V]`` logits (teacher forcing), each channel in its slice."""
        return self.channel_logits(self.trunk(self.embed(codes), classes), codes) + self.channel_bias

    # --- the prior contract ------------------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean negative log-likelihood per code, in nats (exact)."""
        codes = codes.long()
        classes = self.classes(labels, codes.shape[0], codes.device, drop=self.training)
        logits = self.logits(codes, classes)
        return F.cross_entropy(logits.flatten(0, -2), (codes + self.offsets).flatten())

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: Optional[torch.Tensor] = None,
        controls: Optional[SampleControls] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Draw ``n`` code grids ``[n, H, W, C]``, position by position in raster order, channel by channel."""
        controls = controls or SampleControls()
        device = self.offsets.device
        height, width = self.config.grid
        warpers = logits_warpers(controls.temperature, controls.top_k, controls.top_p)
        guidance = Guidance(self.classes(labels, n, device), self.null_class,
                            controls.cfg_scale)
        codes = torch.zeros(n, height, width, self.n_channels, dtype=torch.long, device=device)
        for row in range(height):
            links = self.row_links(guidance.expand(codes), row, guidance.classes)  # once per row
            for col in range(width):
                features = self.features_at(guidance.expand(codes), links, row, col, guidance.classes)
                for channel in range(self.n_channels):
                    logits = self.channel_logits(features, guidance.expand(codes[:, row, col]))[:, channel]
                    chosen = draw(guidance.combine(logits) + self.channel_bias[channel], warpers, generator)
                    codes[:, row, col, channel] = chosen - self.offsets[channel]
        return codes
