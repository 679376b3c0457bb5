"""Reconstruction losses. The decoder's output layout depends on the loss: MSE, L1 and Gaussian predict the image
itself, logit-Laplace (DALL-E's dVAE) predicts a location and a log-scale per channel in logit space.

``gaussian`` is the Gaussian negative log-likelihood with the decoder variance set to the current mean squared error
(``(D/2) log MSE`` per image of ``D`` pixel values, Takida et al. 2022), divided by ``D``: ``0.5 log MSE``. SQ-VAE
needs it: its variance anneals only against a reconstruction term that sharpens as the error falls.

``bounded``: the loss sees the output clamped to the data range [-1, 1] with a straight-through gradient, i.e. the
error of the image that will be shown. A pixel that should be black may then sit anywhere below -1 and shows as
exact black; under a plain MSE the decoder hovers around -1 and a third of MNIST's black background comes out grey.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSSES = ("mse", "l1", "gaussian", "logit_laplace")
LOGIT_LAPLACE_EPS = 0.1  # pixels are squeezed into [eps, 1 - eps] so their logits stay finite (DALL-E uses 0.1)


def decoder_channels(loss: str, image_channels: int) -> int:
    return 2 * image_channels if loss == "logit_laplace" else image_channels


def to_image(output: torch.Tensor, loss: str) -> torch.Tensor:
    """Decoder output -> image in [-1, 1] (the mean of the predicted distribution's squeezed pixel).

    Clamped: with ``bounded_output`` a black pixel's raw output may lie anywhere below -1."""
    if loss != "logit_laplace":
        return output.clamp(-1.0, 1.0)
    mu = output[:, : output.shape[1] // 2]
    squeezed = torch.sigmoid(mu)
    pixel = ((squeezed - LOGIT_LAPLACE_EPS) / (1 - 2 * LOGIT_LAPLACE_EPS)).clamp(0, 1)
    return pixel * 2 - 1


def clamp_straight_through(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """``clamp(x)`` in the forward pass, the identity's gradient in the backward pass."""
    return x + (x.clamp(low, high) - x).detach()


def loss_image(output: torch.Tensor, loss: str, bounded: bool) -> torch.Tensor:
    """The image a perceptual or adversarial loss judges: differentiable, and the one that will be shown."""
    if loss == "logit_laplace":
        return to_image(output, loss)
    return clamp_straight_through(output) if bounded else output


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, loss: str, bounded: bool = False) -> torch.Tensor:
    """Mean per-element loss (``gaussian``: per pixel value); ``target`` in [-1, 1]."""
    if bounded and loss != "logit_laplace":  # logit-Laplace's output is a distribution, bounded by construction
        output = clamp_straight_through(output)
    if loss == "mse":
        return F.mse_loss(output, target)
    if loss == "l1":
        return F.l1_loss(output, target)
    if loss == "gaussian":
        return 0.5 * torch.log(F.mse_loss(output.float(), target.float()).clamp_min(1e-12))
    # Logit-Laplace negative log-likelihood of the squeezed pixel y in (0, 1):
    #   -log p(y) = log(2 b) + log(y (1 - y)) + |logit(y) - mu| / b
    mu, log_b = output.chunk(2, dim=1)
    y = (target + 1) / 2 * (1 - 2 * LOGIT_LAPLACE_EPS) + LOGIT_LAPLACE_EPS
    logit_y = torch.log(y) - torch.log1p(-y)
    nll = math.log(2.0) + log_b + torch.log(y * (1 - y)) + (logit_y - mu).abs() * torch.exp(-log_b)
    return nll.mean()
