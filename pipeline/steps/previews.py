"""What a training step shows at each epoch end in a logger that takes images: a tokenizer's reconstructions
under their originals, a prior's samples decoded by the tokenizer that made its codes."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from rich.console import Console

from stage1_tokenizer.tokenizer import Tokenizer
from stage2_prior.config import SampleControls

from ..core.code_dataset import CodeDataset
from ..core.files import WEIGHTS_FILE, sha256_file
from ..core.images import to_float, to_uint8

console = Console(stderr=True)
Preview = Callable[[torch.nn.Module], torch.Tensor]


def reconstructions(images: torch.Tensor) -> Preview:
    """``images`` (uint8, fixed validation images) in one row, their reconstructions below."""

    def make(module) -> torch.Tensor:
        model = module.evaluation_model()
        recon = model.output_to_image(model(to_float(images).to(module.device))[0])
        return torch.cat([images, to_uint8(recon.float().cpu())])

    return make


def samples(codes: CodeDataset, n: int, controls: SampleControls) -> Optional[Preview]:
    """``n`` samples (classes in turn for a conditional prior) from one seed, so epochs compare; None when the
    tokenizer that made ``codes`` is not where they say (then the logger shows no images)."""
    made_by = codes.meta.get("tokenizer", {})
    tokenizer_dir = Path(made_by.get("dir", ""))
    weights = tokenizer_dir / WEIGHTS_FILE
    if not weights.is_file() or sha256_file(weights) != made_by.get("weights_sha256"):
        console.print(f"[yellow]no sample images in the training log: the tokenizer that made {codes.directory} "
                      f"is not in {tokenizer_dir}[/]")
        return None
    tokenizer = Tokenizer.load(tokenizer_dir)

    def make(module) -> torch.Tensor:
        prior = module.prior
        labels = torch.arange(n) % prior.config.num_classes if prior.config.num_classes else None
        drawn = prior.sample(n, labels, controls, generator=torch.Generator().manual_seed(0))
        return to_uint8(tokenizer.decode(drawn if isinstance(drawn, dict) else {codes.level: drawn}))

    return make
