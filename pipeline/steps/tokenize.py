"""Step 2: encode each image split with the tokenizer into a code dataset (meta.json + codes.safetensors, or
shards of ``tokenize.shard_items`` items; with ``tokenize.devices`` > 1, written by that many processes)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from stage1_tokenizer.tokenize import check_fits, tokenize_split
from stage1_tokenizer.tokenizer import Tokenizer

from ..config import PipelineConfig
from ..core.code_dataset import META_FILE, CodeDataset
from ..core.errors import VqgenError
from ..core.files import WEIGHTS_FILE, load_model_dir, sha256_file
from ..datasets import load_split
from ..run_paths import RunPaths
from .fingerprints import digest
from .step import Step
from .tokenize_processes import device_for, tokenize_in_processes

console = Console(stderr=True)


def fingerprint(cfg: PipelineConfig, tokenizer_dir: Path) -> str:
    # tokenize.* is left out: processes, batch size and the cut into shards do not change the codes.
    return digest("codes", sha256_file(tokenizer_dir / WEIGHTS_FILE), cfg.data.fingerprint_dump())


def is_complete(split_dir: Path) -> bool:
    try:
        CodeDataset(split_dir)
    except VqgenError:
        return False
    return True


def run(cfg: PipelineConfig, tokenizer_dir: Path, out_root: Path, splits=("train", "test")) -> None:
    """Write ``out_root/SPLIT`` for each split."""
    options = cfg.tokenize
    if options.devices > 1:
        load_model_dir(tokenizer_dir, "tokenizer")  # a missing or damaged tokenizer: one clear error, not N
        tokenize_in_processes(cfg, tokenizer_dir, out_root, splits, fingerprint(cfg, tokenizer_dir))
        console.print(f"tokenized {', '.join(splits)} in {options.devices} processes -> {out_root}")
        return
    device = device_for(options.accelerator, 0)
    tokenizer = Tokenizer.load(tokenizer_dir, device)  # first: it says clearly what is wrong with the directory
    expected = fingerprint(cfg, tokenizer_dir)
    for split in splits:
        data = load_split(cfg.data, split)
        check_fits(tokenizer, tokenizer_dir, data)
        tokenize_split(tokenizer, tokenizer_dir, data, out_root / split, options.batch_size,
                       extra_meta={"fingerprint": expected}, shard_items=options.shard_items, device=device)
        console.print(f"tokenized {len(data)} {split} images -> {out_root / split}")


def step(cfg: PipelineConfig, paths: RunPaths, split: str) -> Step:
    out = paths.codes(split)
    return Step(f"tokenize {split}", out / META_FILE, lambda: fingerprint(cfg, paths.tokenizer),
                lambda: is_complete(out), lambda expected: run(cfg, paths.tokenizer, paths.codes_root, (split,)))
