"""Step 2: encode each image split with the tokenizer into a code dataset (meta.json + codes.safetensors)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from stage1_tokenizer.tokenize import tokenize_split
from stage1_tokenizer.tokenizer import Tokenizer

from ..config import PipelineConfig
from ..core.code_dataset import META_FILE, CodeDataset
from ..core.errors import VqgenError
from ..core.files import WEIGHTS_FILE, sha256_file
from ..datasets import load_split
from ..run_paths import RunPaths
from .fingerprints import digest
from .step import Step

console = Console(stderr=True)


def fingerprint(cfg: PipelineConfig, tokenizer_dir: Path) -> str:
    return digest("codes", sha256_file(tokenizer_dir / WEIGHTS_FILE), cfg.data.fingerprint_dump())


def is_complete(split_dir: Path) -> bool:
    try:
        CodeDataset(split_dir)
    except VqgenError:
        return False
    return True


def run(cfg: PipelineConfig, tokenizer_dir: Path, out_root: Path, splits=("train", "test")) -> None:
    """Write ``out_root/SPLIT`` for each split."""
    tokenizer = Tokenizer.load(tokenizer_dir)
    expected = fingerprint(cfg, tokenizer_dir)
    for split in splits:
        data = load_split(cfg.data, split)
        if data.image_size != tokenizer.config.image_size or data.channels != tokenizer.config.in_channels:
            raise VqgenError(
                f"the tokenizer in {tokenizer_dir} takes {tokenizer.config.in_channels}x{tokenizer.config.image_size}"
                f"px images, but {cfg.data.name}/{split} gives {data.channels}x{data.image_size}px; "
                f"set data.image_size/data.channels to match")
        tokenize_split(tokenizer, tokenizer_dir, data, out_root / split, extra_meta={"fingerprint": expected})
        console.print(f"tokenized {len(data)} {split} images -> {out_root / split}")


def step(cfg: PipelineConfig, paths: RunPaths, split: str) -> Step:
    out = paths.codes(split)
    return Step(f"tokenize {split}", out / META_FILE, lambda: fingerprint(cfg, paths.tokenizer),
                lambda: is_complete(out), lambda expected: run(cfg, paths.tokenizer, paths.codes_root, (split,)))
