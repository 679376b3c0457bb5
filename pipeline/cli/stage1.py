"""Stage-1 commands: ``vqgen tokenizer train``, ``vqgen tokenizer eval`` and ``vqgen tokenize``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ..option_checks import check_exists, check_split
from .apps import app, tokenizer_app
from .options import ConfigSource, TokenizerOpt, config_command, record_config

console = Console(stderr=True)


@tokenizer_app.command("train")
@config_command(data=True, trainer="tokenizer")
def tokenizer_train(
    source: ConfigSource,
    out: Optional[Path] = typer.Option(None, "--out", help="Tokenizer directory (default RUN_DIR/tokenizer)."),
):
    """Train a tokenizer; writes config.json + model.safetensors (resumes from checkpoints/last.ckpt)."""
    cfg = source.load()
    from ..run_paths import RunPaths  # after the config check: the steps import torch and Lightning
    from ..steps import tokenizer as step

    target = out or RunPaths(cfg.run_dir).tokenizer
    step.run(cfg, target)
    record_config(cfg, target)
    console.print(f"tokenizer -> {target}")


@tokenizer_app.command("eval")
@config_command(data=True)
def tokenizer_eval(
    source: ConfigSource, tokenizer: Optional[Path] = TokenizerOpt,
    split: str = typer.Option("test", "--split", help="Image split to evaluate on: train or test."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default TOKENIZER/eval)."),
):
    """MSE, PSNR, SSIM, perplexity and usage on a split; eval.json, reconstructions.png, codebook_usage.png."""
    check_split(split)
    check_exists(tokenizer, "--tokenizer")
    cfg = source.load()
    from stage1_tokenizer.evaluate import evaluate_tokenizer, optional_lpips, reconstruction_grid, usage_histogram
    from stage1_tokenizer.tokenizer import Tokenizer

    from ..core.files import write_json
    from ..datasets import load_split
    from ..run_paths import EVAL_DIR, RunPaths

    tok_dir = tokenizer or RunPaths(cfg.run_dir).tokenizer
    model = Tokenizer.load(tok_dir)
    images = load_split(cfg.data, split)
    lpips, why_not = optional_lpips(cfg.tokenizer.loss.lpips_weights)
    metrics, counts = evaluate_tokenizer(model, images, lpips=lpips)
    target = out or tok_dir / EVAL_DIR
    target.mkdir(parents=True, exist_ok=True)
    reconstruction_grid(model, images, target / "reconstructions.png")
    usage_histogram(counts, target / "codebook_usage.png")
    write_json(target / "eval.json", {"tokenizer": str(tok_dir), "data": f"{cfg.data.name}/{split}", **metrics})
    record_config(cfg, target)
    _print_eval(metrics, tok_dir, f"{cfg.data.name}/{split}")
    if why_not:
        console.print(f"LPIPS not measured: {why_not} (see tokenizer.loss.lpips_weights)")
    console.print(f"wrote {target}/eval.json, reconstructions.png, codebook_usage.png")


def _print_eval(metrics: dict, tok_dir: Path, data: str) -> None:
    from rich.table import Table

    from stage1_tokenizer.evaluate import low_usage_message

    table = Table(title=f"tokenizer {tok_dir} on {data} ({metrics['images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("mse", "psnr", "ssim", "lpips"):
        if metrics[key] is not None:
            table.add_row(key, f"{metrics[key]:.4f}")
    for level, stats in metrics["levels"].items():
        table.add_row(f"{level} perplexity", f"{stats['perplexity']:.1f} of {sum(stats['codebook_sizes'])}")
        table.add_row(f"{level} usage", f"{stats['usage']:.3f}")
    table.add_row("black pixels (recon / data)", f"{metrics['black_share']:.1%} / {metrics['black_share_data']:.1%}")
    Console().print(table)
    for level, stats in metrics["levels"].items():
        warning = low_usage_message(level, stats["usage"], max(stats["codebook_sizes"]), data)
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")


@app.command("tokenize")
@config_command(data=True)
def tokenize(
    source: ConfigSource, tokenizer: Optional[Path] = TokenizerOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Codes root; splits go to OUT/train, OUT/test."),
    split: List[str] = typer.Option(["train", "test"], "--split",
                                    help="Split(s) to tokenize; repeat the option for several."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Processes (one per GPU), each writing every "
                                                                   "N-th shard (tokenize.devices)."),
    shard_items: Optional[int] = typer.Option(None, "--shard-items", help="Items per shard file (default: about "
                                                                          "1 GB each; tokenize.shard_items)."),
):
    """Encode image splits into code datasets (meta.json + codes.safetensors, or shards, per split)."""
    for name in split:
        check_split(name)
    check_exists(tokenizer, "--tokenizer")
    cfg = source.load(**{"tokenize.devices": devices, "tokenize.shard_items": shard_items})
    from ..run_paths import RunPaths  # after the config check: the steps import torch and Lightning
    from ..steps import tokenize as step

    paths = RunPaths(cfg.run_dir)
    target = out or paths.codes_root
    step.run(cfg, tokenizer or paths.tokenizer, target, splits=tuple(split))
    record_config(cfg, target)
