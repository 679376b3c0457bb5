"""Convolutional encoder and decoder (the residual design of the VQ-VAE paper), with a configurable downsampling."""

from __future__ import annotations

import math

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, res_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, res_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(res_channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _residual_stack(channels: int, res_channels: int, n_blocks: int) -> list[nn.Module]:
    return [ResidualBlock(channels, res_channels) for _ in range(n_blocks)] + [nn.ReLU()]


class Encoder(nn.Module):
    """``[B, C, H, W] -> [B, out_channels, H/downsample, W/downsample]``: strided 4x4 convs, then residual blocks."""

    def __init__(self, in_channels, hidden_channels, res_channels, n_res_blocks, downsample, out_channels):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        n_down = int(math.log2(downsample))
        for i in range(n_down):
            width = hidden_channels if i == n_down - 1 else max(hidden_channels // 2, 1)
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.Conv2d(channels, hidden_channels, 3, padding=1))
        layers += _residual_stack(hidden_channels, res_channels, n_res_blocks)
        layers.append(nn.Conv2d(hidden_channels, out_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Mirror of :class:`Encoder`: residual blocks, then transposed 4x4 convs back to full resolution."""

    def __init__(self, in_channels, hidden_channels, res_channels, n_res_blocks, upsample, out_channels):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden_channels, 3, padding=1)]
        layers += _residual_stack(hidden_channels, res_channels, n_res_blocks)
        n_up = int(math.log2(upsample))
        channels = hidden_channels
        for i in range(n_up):
            last = i == n_up - 1
            width = out_channels if last else max(hidden_channels // 2, 1)
            layers.append(nn.ConvTranspose2d(channels, width, 4, stride=2, padding=1))
            if not last:
                layers.append(nn.ReLU())
            channels = width
        if n_up == 0:
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- DALL-E-style (dVAE) networks: bottleneck residual blocks with a post-gain, max-pool / nearest resampling ----

class DalleBlock(nn.Module):
    """Bottleneck residual block: identity (or 1x1) shortcut + post_gain * (3x3 -> 3x3 -> 3x3 -> 1x1 path)."""

    def __init__(self, in_channels: int, out_channels: int, post_gain: float):
        super().__init__()
        hidden = max(out_channels // 4, 1)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.path = nn.Sequential(
            nn.ReLU(), nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, out_channels, 1),
        )
        self.post_gain = post_gain  # keeps the residual sum well scaled at init, as in DALL-E

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.post_gain * self.path(x)


class DalleEncoder(nn.Module):
    """Groups of blocks; channels grow per group; a 2x max-pool between groups (log2(downsample) times)."""

    def __init__(self, in_channels, hidden_channels, res_channels, n_res_blocks, downsample, out_channels):
        super().__init__()
        n_groups = int(math.log2(downsample)) + 1
        blocks = max(n_res_blocks, 1)
        gain = 1.0 / (n_groups * blocks) ** 2
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden_channels, 7, padding=3)]
        channels = hidden_channels
        for group in range(n_groups):
            width = hidden_channels * 2 ** min(group, 2)
            for _ in range(blocks):
                layers.append(DalleBlock(channels, width, gain))
                channels = width
            if group < n_groups - 1:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.ReLU(), nn.Conv2d(channels, out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DalleDecoder(nn.Module):
    """Mirror of :class:`DalleEncoder` with nearest-neighbour 2x upsampling between groups."""

    def __init__(self, in_channels, hidden_channels, res_channels, n_res_blocks, upsample, out_channels):
        super().__init__()
        n_groups = int(math.log2(upsample)) + 1
        blocks = max(n_res_blocks, 1)
        gain = 1.0 / (n_groups * blocks) ** 2
        channels = hidden_channels * 2 ** min(n_groups - 1, 2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 1)]
        for group in reversed(range(n_groups)):
            width = hidden_channels * 2 ** min(group, 2)
            for _ in range(blocks):
                layers.append(DalleBlock(channels, width, gain))
                channels = width
            if group > 0:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.ReLU(), nn.Conv2d(channels, out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


NETWORKS = {"deepmind": (Encoder, Decoder), "dalle": (DalleEncoder, DalleDecoder)}
