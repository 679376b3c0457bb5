"""Reconstruction losses. The decoder's output layout depends on the loss: MSE and L1 predict the image itself,
logit-Laplace (DALL-E's dVAE) predicts a location and a log-scale per channel in logit space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSSES = ("mse", "l1", "logit_laplace")
LOGIT_LAPLACE_EPS = 0.1  # pixels are squeezed into [eps, 1 - eps] so their logits stay finite (DALL-E uses 0.1)


def decoder_channels(loss: str, image_channels: int) -> int:
    return 2 * image_channels if loss == "logit_laplace" else image_channels


def to_image(output: torch.Tensor, loss: str) -> torch.Tensor:
    """Decoder output -> image in [-1, 1] (the mean of the predicted distribution's squeezed pixel)."""
    if loss != "logit_laplace":
        return output
    mu = output[:, : output.shape[1] // 2]
    squeezed = torch.sigmoid(mu)
    pixel = ((squeezed - LOGIT_LAPLACE_EPS) / (1 - 2 * LOGIT_LAPLACE_EPS)).clamp(0, 1)
    return pixel * 2 - 1


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean per-element loss; ``target`` in [-1, 1]."""
    if loss == "mse":
        return F.mse_loss(output, target)
    if loss == "l1":
        return F.l1_loss(output, target)
    # Logit-Laplace negative log-likelihood of the squeezed pixel y in (0, 1):
    #   -log p(y) = log(2 b) + log(y (1 - y)) + |logit(y) - mu| / b
    mu, log_b = output.chunk(2, dim=1)
    y = (target + 1) / 2 * (1 - 2 * LOGIT_LAPLACE_EPS) + LOGIT_LAPLACE_EPS
    logit_y = torch.log(y) - torch.log1p(-y)
    nll = math.log(2.0) + log_b + torch.log(y * (1 - y)) + (logit_y - mu).abs() * torch.exp(-log_b)
    return nll.mean()
