"""The adversarial part of a VQGAN-class tokenizer (Esser et al. 2021): a PatchGAN discriminator, its losses, the
adaptive weight of the generator's adversarial term, and LeCam regularisation (Tseng et al. 2021).

PatchGAN (Isola et al. 2017, as taming-transformers builds it): 4x4 convs, stride 2 for ``layers`` halvings, then two
stride-1 convs, so each output logit judges one patch of the image. The adaptive weight (VQGAN paper, eq. 7) is
``||grad_L(rec)|| / (||grad_L(adv)|| + 1e-4)`` at the decoder's last layer ``L``, clamped to [0, 1e4] and detached:
it balances the two terms' pull on the output whatever their scales.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    return nn.Identity()


class PatchDiscriminator(nn.Module):
    """``[B, C, H, W] -> [B, 1, h, w]`` logits, one per patch."""

    def __init__(self, in_channels: int, channels: int = 64, layers: int = 3,
                 norm: Literal["batch", "group", "none"] = "batch"):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < layers else 1  # the last block keeps the resolution, as in taming's NLayerDiscriminator
            blocks += [nn.Conv2d(width, out, 4, stride, 1, bias=norm == "none"), _norm(norm, out), nn.LeakyReLU(0.2)]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)
        for module in self.modules():  # DCGAN init, as taming
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Hinge: ``mean(relu(1 - D(x))) + mean(relu(1 + D(G)))``; non-saturating: the logistic loss of real vs fake.
    Halved, as taming does, so the two kinds share a scale."""
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


def generator_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Hinge: ``-mean(D(G))``; non-saturating: ``mean(softplus(-D(G)))`` = ``-log sigmoid(D(G))``."""
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's balance of the adversarial term against the reconstruction term at the decoder's last layer."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class LeCam(nn.Module):
    """LeCam regulariser: keeps D's outputs near the moving averages of its outputs on the other side,
    ``mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(G))^2)``. The averages are saved with the model."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.ema_real.lerp_(real.mean().float(), 1 - self.decay)
            self.ema_fake.lerp_(fake.mean().float(), 1 - self.decay)
        return F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()
