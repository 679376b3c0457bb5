"""Tokenizer evaluation on an image split: MSE, PSNR, SSIM, per-level perplexity and usage, and two figures
(reconstructions next to originals; the codebook-usage histogram)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.core.files import atomic_path
from pipeline.core.images import ImageData, to_float, to_uint8, write_image_grid

from .quantizers.usage import count_codes, usage_figures


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) of images in [0, 1], channel-averaged."""
    channels = a.shape[1]
    window = _gaussian_window().to(a).expand(channels, 1, -1, -1)
    conv = lambda t: F.conv2d(t, window, groups=channels)
    mu_a, mu_b = conv(a), conv(b)
    var_a = conv(a * a) - mu_a**2
    var_b = conv(b * b) - mu_b**2
    cov = conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return score.flatten(1).mean(1)


LOW_USAGE = 0.5  # a codebook used under this share wastes most of its vocabulary


def low_usage_message(level: str, usage: float, size: int, where: str) -> str | None:
    """A warning for a codebook that uses less than half its codes, or None when it is fine."""
    if usage >= LOW_USAGE:
        return None
    return (f"{where}: the {level} codebook used {usage:.0%} of its {size} codes; most of the vocabulary is dead. "
            f"Try kmeans_init and restart (vq, ema, rvq, pq), a stronger KL (gumbel) or a smaller codebook_size")


def optional_lpips(weights: str | None = None):
    """``(LPIPS, None)`` when its weights can be had, else ``(None, why)``: evaluation reports LPIPS when it can."""
    from pipeline.core.errors import VqgenError

    from .perceptual import load_lpips

    try:
        return load_lpips(weights), None
    except VqgenError as err:
        return None, str(err).split(". ")[0]


@torch.no_grad()
def evaluate_tokenizer(tokenizer, data: ImageData, batch_size: int = 256,
                       lpips=None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Returns (metrics, per-level code counts ``[sum of codebook sizes]``); with an LPIPS module, its mean too."""
    tokenizer.eval()
    lpips_sum = 0.0
    levels = tokenizer.levels()
    counts = {name: torch.zeros(sum(spec["codebook_sizes"]), dtype=torch.float64) for name, spec in levels.items()}
    sq_err = psnr_sum = ssim_sum = 0.0
    black_recon = black_data = 0  # pixel values exactly 0 in uint8: a decoder that cannot reach black shows grey
    n = values = 0  # counted from the batches: a streamed split may leave out unreadable files
    for batch, _ in data.batches(batch_size):
        n, values = n + batch.shape[0], values + batch.numel()
        images = to_float(batch)
        codes = tokenizer.encode(images)
        recon = tokenizer.decode(codes).clamp(-1, 1)
        per_image = (recon - images).pow(2).flatten(1).mean(1)
        sq_err += per_image.sum().item()
        black_recon += int((to_uint8(recon) == 0).sum())
        black_data += int((batch == 0).sum())
        psnr_sum += (10 * torch.log10(4.0 / per_image.clamp_min(1e-10))).sum().item()
        if images.shape[-1] >= 11:
            ssim_sum += ssim((recon + 1) / 2, (images + 1) / 2).sum().item()
        if lpips is not None:
            lpips_sum += lpips(recon, images).sum().item()
        for name, level_codes in codes.items():
            count_codes(counts[name], level_codes, levels[name]["codebook_sizes"])
    metrics = {"images": n, "mse": sq_err / n, "psnr": psnr_sum / n,
               "ssim": ssim_sum / n if data.image_size >= 11 else None,
               "lpips": lpips_sum / n if lpips is not None else None,
               "black_share": black_recon / values, "black_share_data": black_data / values, "levels": {}}
    for name, spec in levels.items():
        metrics["levels"][name] = {"grid": spec["grid"], "codebook_sizes": spec["codebook_sizes"],
                                   **usage_figures(counts[name], spec["codebook_sizes"])}
    return metrics, counts


@torch.no_grad()
def reconstruction_grid(tokenizer, data: ImageData, path: Path, n: int = 32) -> None:
    """Rows alternate originals and their reconstructions, 8 images a row; the originals are spread over the split."""
    originals = data.spread(n)
    recon = to_uint8(tokenizer.reconstruct(to_float(originals)))
    rows = []
    for start in range(0, originals.shape[0], 8):
        rows += [originals[start : start + 8], recon[start : start + 8]]
    write_image_grid(torch.cat(rows), path, nrow=8)


def usage_histogram(counts: dict[str, torch.Tensor], path: Path) -> None:
    """Codes sorted by frequency, one panel per level: a flat curve means an evenly used codebook."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(counts), figsize=(5 * len(counts), 3.2), squeeze=False)
    for ax, (name, level_counts) in zip(axes[0], counts.items()):
        freq = (level_counts / level_counts.sum()).sort(descending=True).values.numpy()
        ax.bar(range(len(freq)), freq, width=1.0, color="#3b6ea5")
        used = int((level_counts > 0).sum())
        ax.set_title(f"{name}: {used}/{len(freq)} codes used")
        ax.set_xlabel("code (sorted by frequency)")
        ax.set_ylabel("fraction of positions")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
