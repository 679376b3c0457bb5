"""LPIPS (Zhang et al. 2018), the perceptual distance VQGAN-class tokenizers train with, as its authors define it:
VGG16 features at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of the images scaled by the authors' constants,
each feature vector unit-normalised over channels, squared differences weighted per channel by the calibrated linear
heads (the ``lpips`` package's v0.1 VGG weights), averaged over space and summed over the five layers.

Weights: the heads ship inside the ``lpips`` package; the VGG16 backbone is torchvision's ImageNet model
(``VGG16_Weights.IMAGENET1K_V1``, what ``lpips`` loads), from torchvision's download or torch hub cache, or from a
local file: torchvision's ``vgg16-397923af.pth`` or any file with the ``features.N.*`` keys (and, optionally, the
heads as ``linK.weight`` or lpips' ``linK.model.1.weight``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from pipeline.core.errors import VqgenError

WEIGHTS_ENV = "VQGEN_LPIPS_WEIGHTS"
LAYER_ENDS = (4, 9, 16, 23, 30)  # torchvision VGG16 ``features`` indices just after relu1_2 ... relu5_3
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # the authors' ScalingLayer, for images in [-1, 1]
SCALE = (0.458, 0.448, 0.450)


def _vgg16_features() -> nn.Sequential:
    from torchvision.models import vgg16

    return vgg16(weights=None).features[: LAYER_ENDS[-1]]


class LPIPS(nn.Module):
    """``lpips(x, y) -> [N]`` for images in [-1, 1] of shape ``[N, 1 or 3, H, W]``; frozen, always in eval mode."""

    def __init__(self):
        super().__init__()
        self.features = _vgg16_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # a fixed metric: no dropout, whatever the caller's mode

    def _layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.expand(-1, 3, -1, -1) - self.shift) / self.scale
        outputs, start = [], 0
        for end in LAYER_ENDS:
            x = self.features[start:end](x)
            outputs.append(x)
            start = end
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        for head, fx, fy in zip(self.heads, self._layers(x), self._layers(y)):
            fx, fy = fx.float(), fy.float()
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((fx - fy).pow(2)).mean((1, 2, 3))
        return total


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else {}


def _heads_from(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``linK.weight`` or lpips' own ``linK.model.1.weight`` -> ``K.weight`` of :attr:`LPIPS.heads`."""
    heads = {}
    for key, value in state.items():
        match = re.fullmatch(r"lin(\d)(?:\.model\.1)?\.weight", key)
        if match:
            heads[f"{match.group(1)}.weight"] = value
    return heads


def _packaged_heads() -> dict[str, torch.Tensor]:
    from importlib import resources

    try:
        with resources.as_file(resources.files("lpips") / "weights" / "v0.1" / "vgg.pth") as path:
            return _heads_from(torch.load(path, map_location="cpu", weights_only=True))
    except (ModuleNotFoundError, FileNotFoundError):
        return {}


def _downloaded_backbone() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False)


def _offline_error(detail: str) -> VqgenError:
    return VqgenError(
        f"LPIPS needs VGG16 weights and could not get them ({detail}). Give a local copy of torchvision's "
        f"vgg16-397923af.pth (or a file with its features.N.* keys) as tokenizer.loss.lpips_weights or "
        f"${WEIGHTS_ENV}, run once with network access so torchvision caches it, or set "
        f"tokenizer.loss.perceptual_weight: 0 to train without the perceptual loss")


def load_lpips(weights: Optional[str] = None) -> LPIPS:
    """LPIPS with its weights: ``weights`` (or ``$VQGEN_LPIPS_WEIGHTS``) is a local file; without one the backbone
    comes from torchvision (its cache, else a download). Raises a clear error when they cannot be had."""
    source = weights or os.environ.get(WEIGHTS_ENV)
    if source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise VqgenError(f"LPIPS weights file {path} does not exist; set tokenizer.loss.lpips_weights (or "
                             f"${WEIGHTS_ENV}) to torchvision's vgg16-397923af.pth or a file with its keys")
        state = _read_state(path)
    else:
        try:
            state = _downloaded_backbone()
        except Exception as err:  # no network, a proxy page, a partial file: all mean "not available"
            raise _offline_error(f"{type(err).__name__}: {err}") from None
    backbone = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    heads = _heads_from(state) or _packaged_heads()
    model = LPIPS()
    expected = set(model.features.state_dict())
    if set(backbone) != expected:
        raise VqgenError(f"LPIPS weights {source or 'download'}: the VGG16 backbone needs the keys "
                         f"features.{{{','.join(sorted(expected, key=lambda k: int(k.split('.')[0])))}}}; "
                         f"found {len(backbone)} of them")
    if len(heads) != len(CHANNELS):
        raise VqgenError("LPIPS needs its five calibrated linear heads: install the lpips package (uv sync) or put "
                         "them in the weights file as lin0.weight ... lin4.weight")
    try:
        model.features.load_state_dict(backbone)
        model.heads.load_state_dict(heads)
    except RuntimeError as err:
        raise VqgenError(f"LPIPS weights {source or 'download'} have the wrong shapes: {err}") from None
    return model
