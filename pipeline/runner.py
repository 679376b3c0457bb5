"""``vqgen run CONFIG``: the whole chain in one run directory, skipping steps whose outputs are complete and were
made from the same inputs (a fingerprint recorded in each output), redoing the rest. ``run_step`` is the one place
that decides; experiments/ call it for their own chains."""

from __future__ import annotations

import time
from typing import Optional

from rich.console import Console

from .config import PipelineConfig, dump_config
from .core.files import write_text
from .option_checks import SPLITS
from .run_paths import RunPaths
from .steps import fid, prior, sample, tokenize, tokenizer
from .steps.step import Step

console = Console(stderr=True)


def run_step(step: Step) -> Optional[float]:
    """Do ``step`` unless it is finished with the same fingerprint; the seconds it took, or None when skipped."""
    expected = step.fingerprint()
    if step.finished(expected):
        console.print(f"[green]✓[/] {step.name}: done already ({step.marker.parent})")
        return None
    if step.marker.exists():
        console.print(f"[yellow]↻[/] {step.name}: outputs are stale or damaged; redoing")
    console.rule(step.name)
    started = time.perf_counter()
    step.work(expected)
    return round(time.perf_counter() - started, 1)


def chain(cfg: PipelineConfig, paths: RunPaths) -> list[Step]:
    arch = cfg.prior.arch
    return [tokenizer.step(cfg, paths), *(tokenize.step(cfg, paths, split) for split in SPLITS),
            prior.step(cfg, paths, arch), sample.step(cfg, paths, arch), fid.step(cfg, paths, arch)]


def run_pipeline(cfg: PipelineConfig) -> dict[str, float]:
    """Every step in order; the seconds of each step done (none when all were finished already)."""
    paths = RunPaths(cfg.run_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_text(paths.config, dump_config(cfg))
    timings: dict[str, float] = {}
    for step in chain(cfg, paths):
        seconds = run_step(step)
        if seconds is not None:
            timings[step.name] = seconds
    return timings
