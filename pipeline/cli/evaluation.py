"""Evaluation commands: ``vqgen fid`` (any two image sets) and ``vqgen report`` (pages and a comparison of runs)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ..option_checks import SPLITS, check_exists
from .apps import app
from .errors import user_errors
from .options import ConfigSource, DebugOpt, config_command, record_config

console = Console(stderr=True)


@app.command("fid")
@config_command(data=True)
def fid(
    source: ConfigSource,
    samples: Optional[str] = typer.Option(
        None, "--samples", help="What to score: a samples or run directory, a folder of images, or train/test."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="What to compare with: train/test (default fid.reference_split), a folder of "
                                  "images, or a samples or run directory."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Which prior's samples in the run."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer for rFID ('none' to skip)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report directory (default RUN_DIR/report)."),
    inception_weights: Optional[str] = typer.Option(None, "--inception-weights",
                                                    help="Local Inception weights (else $VQGEN_INCEPTION_WEIGHTS)."),
    fast: Optional[bool] = typer.Option(
        None, "--fast/--exact", help="Feature path: int8 (fast; FID 2-6% above exact on MNIST at 10,000 a side; "
                                     "needs the fast-fid group) or exact (default, torch-fidelity's features)."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Processes taking the Inception features (the "
                                                                  "same features however many; fid.devices)."),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="cpu, or cuda (process r on cuda:r)."),
):
    """FID/KID/precision/recall between any two image sets (a run's samples and the test split by default), and
    rFID of the tokenizer when the reference is a dataset split."""
    # Either side may be a split name or a path: pipeline.image_sources tells them apart.
    check_exists(samples, "--samples", also=SPLITS)
    check_exists(reference, "--reference", also=SPLITS)
    check_exists(tokenizer, "--tokenizer", also=("none",))
    check_exists(inception_weights, "--inception-weights")
    cfg = source.load(**{"prior.arch": arch, "fid.reference": reference,
                         "fid.inception_weights": inception_weights, "fid.fast": fast, "fid.devices": devices,
                         "fid.accelerator": accelerator})
    from ..process_pool import check_cuda_devices  # imports torch, but not yet Lightning nor the Inception

    check_cuda_devices("fid", cfg.fid.devices, cfg.fid.accelerator)
    from ..run_paths import RunPaths  # after the config check: the steps import torch and Lightning
    from ..steps import fid as step

    paths = RunPaths(cfg.run_dir)
    tok = None if str(tokenizer) == "none" else (tokenizer or paths.tokenizer)
    target = out or paths.report
    result = step.run(cfg, samples or paths.samples(cfg.prior.arch), tok, target)
    record_config(cfg, target)
    print_metrics(result)


def print_metrics(result: dict) -> None:
    from rich.table import Table

    table = Table(title="vqgen metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for section in ("generation", "reconstruction"):
        for key, value in result.get(section, {}).items():
            table.add_row(f"{section}.{key}", f"{value:.4g}")
    Console().print(table)


@app.command("report")
@user_errors
def report(
    runs: List[Path] = typer.Argument(..., help="Run directories."),
    out: Path = typer.Option(Path("runs/comparison"), "--out", help="Where the comparison table goes."),
    debug: bool = DebugOpt,
):
    """A Markdown + HTML page per run (RUN/summary/) and a comparison table across runs."""
    from rich.table import Table

    from ..run_paths import RunPaths
    from ..run_summary import collect_run, write_comparison, write_run_page

    infos = []
    for run_dir in runs:
        info = collect_run(run_dir)
        write_run_page(info, RunPaths(run_dir).summary)
        infos.append(info)
    rows = write_comparison(infos, out)
    columns = ["run", "PSNR", "perplexity", "rFID", "prior", "NLL (bits/code)", "n", "FID", "KID"]
    table = Table(title="vqgen comparison (all columns in comparison.md)")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    Console().print(table)
    console.print(f"pages: RUN/summary/index.html; comparison: {out}/comparison.md, comparison.html")
