"""Section c: seconds to sample 64 images (prior.sample, then the tokenizer's decoder).

The models are randomly initialised (untrained weights do not change the cost of sampling) and small, with the
same width and depth for the two transformers: 4 layers, 4 heads, width 128; PixelCNN 4 gated blocks of 128
channels. Codes come from a VQ codebook of 512; the 8x8 grid is a 32x32 image downsampled 4x, the 16x16 grid the
same image downsampled 2x. GPT without its KV cache recomputes the whole prefix at every step, which is what the
cache saves; it and PixelCNN (also a full pass per code) are the slow rows, so their repeats are capped by the
row time budget.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .results import Row, skipped, speedup
from .timing import Settings, median, time_round_robin

SECTION = "c. sample 64 images"
UNIT = "s/64 images"
CACHE_TARGET_AT_256 = 5.0


def _tokenizer(downsample: int, image_size: int, codebook_size: int, device: str):
    from stage1_tokenizer.config import TokenizerConfig
    from stage1_tokenizer.tokenizer import build_tokenizer

    config = TokenizerConfig(in_channels=3, image_size=image_size, downsample=downsample, hidden_channels=64,
                             res_channels=32, embed_dim=64,
                             quantizer={"name": "vq", "codebook_size": codebook_size})
    return build_tokenizer(config).to(device).eval()


def _prior(arch: str, grid: int, codebook_size: int, width: int, device: str):
    from stage2_prior.config import GPTConfig, MaskGITConfig, PixelCNNConfig, PriorConfig
    from stage2_prior.registry import build_prior

    config = PriorConfig(arch=arch, grid=[grid, grid], codebook_sizes=[codebook_size],
                         gpt=GPTConfig(n_layer=4, n_head=4, n_embd=width, dropout=0.0),
                         maskgit=MaskGITConfig(n_layer=4, n_head=4, n_embd=width, dropout=0.0),
                         pixelcnn=PixelCNNConfig(n_layers=4, channels=width))
    return build_prior(config).to(device).eval()


def _sampler(prior, tokenizer, n: int, settings: Settings, **sample_kwargs) -> Callable[[], torch.Tensor]:
    from stage1_tokenizer.vqvae import LEVEL

    @torch.no_grad()
    def sample() -> torch.Tensor:
        with settings.autocast():
            codes = prior.sample(n, **sample_kwargs)
            return tokenizer.decode({LEVEL: codes})

    return sample


def available_priors() -> dict[str, type]:
    """The registry as it stands (PixelCNN and MaskGIT may land later than GPT)."""
    try:
        from stage2_prior.registry import PRIORS
    except ImportError:
        return {}
    return dict(PRIORS)


def run(settings: Settings) -> list[Row]:
    from stage2_prior.config import SampleControls

    n = 2 if settings.quick else 64
    codebook_size, width = (16, 32) if settings.quick else (512, 128)
    grids = [(4, 2)] if settings.quick else [(8, 4), (16, 2)]  # (grid side, downsample of the image)
    image_size = 8 if settings.quick else 32
    priors = available_priors()
    rows: list[Row] = []
    for grid, downsample in grids:
        codes = grid * grid
        tokenizer = _tokenizer(downsample, image_size, codebook_size, settings.device)
        built = {arch: _prior(arch, grid, codebook_size, width, settings.device)
                 for arch in ("gpt", "maskgit", "pixelcnn") if arch in priors}
        if "gpt" not in built:
            rows.append(skipped(SECTION, f"gpt, {codes} codes", UNIT, "GPT prior not registered"))
            continue
        contestants = {"gpt cache": (built["gpt"], {"use_cache": True}),
                       "gpt no cache": (built["gpt"], {"use_cache": False})}
        for steps in (8, 12):
            if "maskgit" in built:
                contestants[f"maskgit {steps}"] = (built["maskgit"], {"controls": SampleControls(steps=steps)})
        if "pixelcnn" in built:
            contestants["pixelcnn"] = (built["pixelcnn"], {})
        calls = {name: _sampler(prior, tokenizer, n, settings, **kw) for name, (prior, kw) in contestants.items()}
        warmups = {name: _sampler(prior, tokenizer, 2, settings, **kw) for name, (prior, kw) in contestants.items()}
        # Warm up on 2 images (same code paths, a fraction of the cost), then time 64: a full-size warm-up call
        # of GPT without cache would double the slowest row for nothing.
        for sampler in warmups.values():
            for _ in range(settings.warmup):
                sampler()
        seconds = time_round_robin(calls, dataclasses.replace(settings, warmup=0), repeats=min(settings.repeats, 3))
        times = {name: median(values) for name, values in seconds.items()}
        shape = f"{grid}x{grid} grid, K={codebook_size}, width {width}, 4 layers, random weights"
        target = CACHE_TARGET_AT_256 if codes == 256 and not settings.quick else None
        cache_gain = speedup(times["gpt cache"], times["gpt no cache"])
        rows.append(Row(SECTION, f"gpt KV cache vs none, {codes} codes", UNIT, times["gpt cache"],
                        times["gpt no cache"], "gpt use_cache=False", cache_gain, target,
                        f"{shape}; repeats: {len(seconds['gpt no cache'])}", dict(seconds)))
        for arch_label, key in [("maskgit 8 steps", "maskgit 8"), ("maskgit 12 steps", "maskgit 12"),
                                ("pixelcnn", "pixelcnn")]:
            case = f"{arch_label} vs gpt (cache), {codes} codes"
            if key not in times:
                rows.append(skipped(SECTION, case, UNIT, f"{key.split()[0]} prior not registered yet", "gpt cache"))
                continue
            rows.append(Row(SECTION, case, UNIT, times[key], times["gpt cache"], "gpt with cache",
                            speedup(times[key], times["gpt cache"]), None,
                            f"{shape}; repeats: {len(seconds[key])}"))
    return rows
