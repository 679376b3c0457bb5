"""The quantizer contract shared by every member of the VQ-VAE family, and the base class that keeps it.

A quantizer maps encoder features ``z`` of shape ``[B, D, H, W]`` to a :class:`QuantizerOutput`
and can turn integer codes back into the features they stand for (``decode_codes``). The base class owns that
wrapping (fp32 whatever the autocast, the channels-last layout, usage counting over the epoch, the perplexity);
a concrete quantizer implements only its maths on flat vectors: ``quantize(x [N, D]) -> Quantized`` and
``dequantize(codes [N, C]) -> [N, D]``. They live one per file next to this one and register their config model
by its ``name`` (:mod:`.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .distributed import all_reduce_sum_
from .usage import count_codes, usage_figures


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    z_q:    quantized features, same shape as the input, carrying a straight-through (or other) gradient.
    codes:  LongTensor ``[B, H, W, C]``; C is 1 for plain VQ, the depth for residual VQ, the groups for product VQ.
    loss:   scalar, already weighted; add it to the reconstruction loss.
    stats:  detached scalars worth logging for this batch (perplexity, usage, loss terms, ...).
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Quantized:
    """What a quantizer's own maths returns for flat vectors ``x [N, D]``.

    z_q:     ``[N, D]`` quantized vectors carrying the method's gradient;
    indices: ``[N, C]`` integer codes, one per code channel;
    loss:    scalar, already weighted;
    stats:   detached scalars worth logging (the base class adds the perplexity).
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def to_channels_last(z: torch.Tensor) -> torch.Tensor:
    """``[B, D, H, W] -> [B, H, W, D]`` so each position's vector is contiguous."""
    return z.permute(0, 2, 3, 1)


def to_channels_first(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 3, 1, 2)


def full_precision(reference: torch.Tensor):
    """Context that turns autocast off, so a quantizer's distances, logits and code maths run in fp32."""
    return torch.autocast(device_type=reference.device.type, enabled=False)


def linear_fp32(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A projection in fp32 even when the module was cast to bf16 (a bf16 projection moves codes across borders)."""
    bias = None if layer.bias is None else layer.bias.float()
    return torch.nn.functional.linear(x.float(), layer.weight.float(), bias)


def straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Forward value ``quantized``, gradient copied unchanged to ``x`` (van den Oord et al. 2017).

    When no gradient is wanted the code vectors are returned as they are: ``x + (q - x)`` differs from ``q`` by
    rounding, and ``decode_codes(codes) == z_q`` must hold exactly.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return quantized
    return x + (quantized - x).detach()


class Quantizer(nn.Module):
    """Base class: ``forward`` and ``decode_codes`` around a subclass's ``quantize`` and ``dequantize``.

    Subclasses set ``embed_dim`` and ``codebook_sizes`` (one vocabulary per code channel, all equal) and call
    :meth:`_init_usage`. The codes of each training batch are counted; :meth:`epoch_stats` turns the counts into
    perplexity, usage fraction and dead codes for the whole epoch, summed over processes under DDP.
    """

    codebook_sizes: list[int]
    embed_dim: int

    def quantize(self, x: torch.Tensor) -> Quantized:  # pragma: no cover - abstract
        raise NotImplementedError

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with full_precision(z):  # distances, logits and code maths in fp32 (low precision picks wrong codes)
            z_last = to_channels_last(z).float()
            out = self.quantize(z_last.reshape(-1, self.embed_dim))
        grid = z_last.shape[:-1]
        codes = out.indices.reshape(*grid, -1)
        if self.training:
            self.record_usage(codes)
        stats = {**out.stats, "perplexity": channel_perplexity(codes, self.codebook_sizes[0])}
        z_q = to_channels_first(out.z_q.reshape(*grid, self.embed_dim)).to(z.dtype)
        return QuantizerOutput(z_q, codes, out.loss, stats)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, H, W, C]`` -> the ``z_q [B, D, H, W]`` they stand for (exactly ``forward``'s in eval)."""
        with full_precision(codes):
            z_q = self.dequantize(codes.reshape(-1, codes.shape[-1]))
        return to_channels_first(z_q.reshape(*codes.shape[:-1], self.embed_dim))

    def _init_usage(self) -> None:
        total = sum(self.codebook_sizes)
        # Counts are not part of the model: they are statistics of the current epoch.
        self.register_buffer("usage_counts", torch.zeros(total, dtype=torch.float64), persistent=False)

    @torch.no_grad()
    def record_usage(self, codes: torch.Tensor) -> None:
        """Add the codes of one batch (``[..., C]``) to the epoch's counts, channel by channel."""
        if not hasattr(self, "usage_counts"):
            self._init_usage()
        count_codes(self.usage_counts, codes, self.codebook_sizes)

    @torch.no_grad()
    def epoch_stats(self, reset: bool = True) -> dict[str, float]:
        """Perplexity, usage fraction and dead codes over everything recorded since the last reset.

        Under DDP the counts are summed over processes first, so every replica reports the same figures.
        For several code channels the figures are averaged over channels (dead codes are summed).
        """
        if not hasattr(self, "usage_counts"):
            self._init_usage()
        counts = all_reduce_sum_(self.usage_counts.clone())
        if reset:
            self.usage_counts.zero_()
        figures = usage_figures(counts, self.codebook_sizes)
        return {**figures, "dead_codes": float(figures["dead_codes"])} if figures else {}

    def set_run_length(self, total_steps: int) -> None:
        """Training steps of the whole run; quantizers with schedules (:class:`.schedules.RunSchedule`) use it."""

    def bind_image_geometry(self, positions: int, pixels: int) -> None:
        """Code positions and pixel values per image; a quantizer whose loss is a per-image sum (sq) uses it."""


def channel_perplexity(codes: torch.Tensor, size: int) -> torch.Tensor:
    """Batch perplexity of each channel of ``codes [..., C]`` (each of vocabulary ``size``), averaged over channels."""
    channels = codes.shape[-1]
    flat = codes.reshape(-1, channels) + torch.arange(channels, device=codes.device) * size
    counts = torch.bincount(flat.reshape(-1), minlength=channels * size).float().view(channels, size)
    probs = counts / counts.sum(1, keepdim=True).clamp_min(1)
    return torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum(1)).mean()
