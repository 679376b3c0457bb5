"""``vqgen run CONFIG``: the whole chain in one run directory, skipping steps whose outputs are finished and
were made from the same inputs (a fingerprint recorded in each output), redoing the rest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rich.console import Console

from pipeline.core.code_dataset import META_FILE

from . import steps
from .config import PipelineConfig, dump_config
from .core.files import CONFIG_FILE, load_model_dir, write_text
from .core.errors import VqgenError

console = Console(stderr=True)


def _valid_model_dir(directory: Path, kind: str) -> bool:
    """A model directory counts as finished only if it loads and its weights match their recorded sha256."""
    try:
        load_model_dir(directory, kind)
    except VqgenError:
        return False
    return True


def run_pipeline(cfg: PipelineConfig) -> dict:
    paths = steps.RunPaths(cfg.run_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_text(paths.root / "config.yaml", dump_config(cfg))
    arch = cfg.prior.arch
    timings: dict[str, float] = {}

    def step(name: str, marker: Path, expected: Callable[[], str], valid: Callable[[], bool], work: Callable) -> None:
        want = expected()
        if marker.exists() and steps.recorded_fingerprint(marker) == want and valid():
            console.print(f"[green]✓[/] {name}: done already ({marker.parent})")
            return
        if marker.exists():
            console.print(f"[yellow]↻[/] {name}: outputs are stale or damaged; redoing")
        console.rule(f"{name}")
        started = time.perf_counter()
        work(want)
        timings[name] = round(time.perf_counter() - started, 1)

    step("tokenizer", paths.tokenizer / CONFIG_FILE, lambda: steps.tokenizer_fingerprint(cfg),
         lambda: _valid_model_dir(paths.tokenizer, "tokenizer"),
         lambda fp: steps.train_tokenizer(cfg, paths.tokenizer))
    for split in ("train", "test"):
        step(f"tokenize {split}", paths.codes(split) / META_FILE,
             lambda: steps.codes_fingerprint(cfg, paths.tokenizer),
             lambda s=split: _valid_codes(paths.codes(s)),
             lambda fp, s=split: steps.tokenize(cfg, paths.tokenizer, paths.root / "codes", splits=(s,)))
    step(f"prior {arch}", paths.prior(arch) / CONFIG_FILE,
         lambda: steps.prior_fingerprint(cfg, paths.codes("train")),
         lambda: _valid_model_dir(paths.prior(arch), "prior"),
         lambda fp: steps.train_prior(cfg, paths.root / "codes", paths.prior(arch)))
    step("sample", paths.samples(arch) / META_FILE,
         lambda: steps.samples_fingerprint(cfg, paths.prior(arch), paths.tokenizer),
         lambda: _valid_samples(paths.samples(arch)),
         lambda fp: steps.sample(cfg, paths.prior(arch), paths.tokenizer, paths.samples(arch), fp))
    step("fid", paths.report / "metrics.json",
         lambda: steps.report_fingerprint(cfg, paths.samples(arch), paths.tokenizer),
         lambda: True,
         lambda fp: steps.fid_report(cfg, paths.samples(arch), paths.tokenizer, paths.report, fp))
    return timings


def _valid_samples(directory: Path) -> bool:
    """Samples count as finished when the grid is there, the codes file loads and every image is there."""
    from pipeline.core.code_dataset import CODES_FILE

    from .core.files import load_tensors, read_json, sha256_file

    try:
        meta = read_json(directory / META_FILE)
        codes = load_tensors(directory / CODES_FILE)
    except VqgenError:
        return False
    n = meta.get("n")
    pngs = list((directory / "png").glob("*.png")) if (directory / "png").is_dir() else []
    if meta.get("codes_sha256") not in (None, sha256_file(directory / CODES_FILE)):
        return False
    return ((directory / "grid.png").exists() and len(pngs) == n
            and all(value.shape[0] == n for key, value in codes.items() if key != "labels"))


def _valid_codes(directory: Path) -> bool:
    from pipeline.core.code_dataset import CodeDataset

    try:
        CodeDataset(directory)
    except VqgenError:
        return False
    return True
