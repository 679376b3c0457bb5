"""Inception pool3 features for FID/KID/precision-recall, extracted in batches without torch-fidelity's DataLoader.

Both feature paths use torch-fidelity's ``FeatureExtractorInceptionV3`` (``inception-v3-compat``): the same
weights, the same TF-1 bilinear resize to 299x299 and the same graph.

- ``exact`` (default): the model in float32 with each BatchNorm folded into the convolution before it, run in
  channels-last memory order under ``torch.inference_mode``. Its features equal torch-fidelity's to about 1e-5
  (float32 rounding from the fold and from oneDNN's channels-last kernels), so FIDs agree with it.
- ``fast``: the same network exported to ONNX and quantized to int8, calibrated on the reference images (see
  :mod:`pipeline.fid_fast`); needs the optional ``fast-fid`` dependency group. Features are approximate; the README
  gives the FID difference measured.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from .core.errors import VqgenError

FEATURE_PATHS = ("exact", "fast")
FEATURE_DIM = 2048


def load_extractor(weights: Optional[Path]) -> nn.Module:
    """torch-fidelity's Inception (``inception-v3-compat``) with only the 2048-d pool3 output, in eval mode."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    kwargs = {} if weights is None else {"feature_extractor_weights_path": str(weights)}
    return FeatureExtractorInceptionV3("inception-v3-compat", [str(FEATURE_DIM)], **kwargs)


def fold_batchnorm(extractor: nn.Module) -> nn.Module:
    """A copy of the extractor where every conv+BN pair is one conv with a bias: one pass over memory less per layer.

    In eval mode BN is an affine map per channel, so ``bn(conv(x)) == conv'(x)`` with scaled weights and a bias;
    in float32 the rounding differs by ~1e-6 relative.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    folded = copy.deepcopy(extractor)
    for block in folded.modules():
        if not isinstance(block, BasicConv2d):
            continue
        conv, bn = block.conv, block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True)
        with torch.no_grad():
            fused.weight.copy_(conv.weight * scale[:, None, None, None])
            fused.bias.copy_(bn.bias - bn.running_mean * scale)
        block.conv, block.bn = fused.requires_grad_(False), nn.Identity()
    return folded.eval()


class ExactFeatures:
    """The exact path: torch-fidelity's forward on the BN-folded, channels-last model."""

    name = "exact"

    def __init__(self, weights: Optional[Path], device: Optional[str] = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = fold_batchnorm(load_extractor(weights)).to(self.device, memory_format=torch.channels_last)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(batch)[0].float().cpu().clone()


def as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """Check the input once, up front: uint8 ``[N, 1 or 3, H, W]``; grayscale becomes 3 equal channels per batch."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise VqgenError(f"FID inputs must be a uint8 image tensor, got "
                         f"{images.dtype if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise VqgenError(f"FID inputs must be shaped [N, 1 or 3, H, W], got {list(images.shape)}")
    if images.shape[0] == 0:
        raise VqgenError("FID inputs hold no images")
    return images


def extract_features(images: torch.Tensor, extractor: Callable, batch_size: int = 64,
                     description: str = "Inception features", progress: bool = True) -> torch.Tensor:
    """Features of every image, in order, batch by batch, with a progress bar that shows images/s (``progress``
    False: none). ``images`` is a uint8 tensor or a streamed image set (``batches``, ``len``), whose batches are
    read as they are needed."""
    if batch_size < 1:
        raise VqgenError(f"FID batch size must be positive, got {batch_size}")
    if not isinstance(images, torch.Tensor) and hasattr(images, "batches"):
        parts = []
        with feature_progress(len(images), description, progress) as advance:
            for batch in images.batches(batch_size):
                parts.append(extractor(as_rgb_uint8(batch).expand(-1, 3, -1, -1)))
                advance(batch.shape[0])
        return torch.cat(parts)
    images = as_rgb_uint8(images)
    out = torch.empty(images.shape[0], FEATURE_DIM, dtype=torch.float32)
    with feature_progress(images.shape[0], description, progress) as advance:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            out[start : start + batch.shape[0]] = extractor(batch.expand(-1, 3, -1, -1))
            advance(batch.shape[0])
    return out


class feature_progress:
    """A rich progress bar with images/s on stderr; silent when VQGEN_NO_PROGRESS=1 (tests, logs) or not ``shown``
    (all processes but one of a multi-process extraction)."""

    def __init__(self, total: int, description: str, shown: bool = True):
        self.total, self.description, self.shown, self.progress = total, description, shown, None

    def __enter__(self) -> Callable[[int], None]:
        if not self.shown or os.environ.get("VQGEN_NO_PROGRESS") == "1":
            return lambda count: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.started = time.perf_counter()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
        self.progress.start()
        task = self.progress.add_task(self.description, total=self.total, rate="")
        done = [0]

        def advance(count: int) -> None:
            done[0] += count
            rate = done[0] / max(time.perf_counter() - self.started, 1e-9)
            self.progress.update(task, advance=count, rate=f"{rate:.1f} images/s")

        return advance

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
