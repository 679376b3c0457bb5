"""``vqgen run`` (and its alias ``vqgen pipeline run``): the whole chain from one config, skipping finished steps."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..core.errors import VqgenError
from .apps import app, pipeline_app
from .evaluation import print_metrics
from .options import ConfigSource, config_command

console = Console(stderr=True)
ConfigArg = typer.Argument(None, help="Experiment config, e.g. configs/quickstart.yaml (or give it with -c).")
CheckpointEveryOpt = typer.Option(None, "--checkpoint-every", help="Both training steps also write a resumable "
                                                                   "checkpoint every N optimizer steps.")


def _run(config: Optional[Path], source: ConfigSource, checkpoint_every: Optional[int] = None) -> None:
    first = [config] if config is not None else []
    if not first and not source.files:  # the whole chain trains for minutes: never on defaults by accident
        raise VqgenError("vqgen run needs a config: vqgen run -c configs/quickstart.yaml (or vqgen run FILE)")
    cfg = source.load(*first, **{f"{section}.train.checkpoint_every_steps": checkpoint_every
                                 for section in ("tokenizer", "prior")})
    from ..core.files import read_json  # after the config check: the runner imports torch and Lightning
    from ..run_paths import METRICS_FILE, RunPaths
    from ..runner import run_pipeline

    timings = run_pipeline(cfg)
    report = RunPaths(cfg.run_dir).report / METRICS_FILE
    if report.exists():
        print_metrics(read_json(report))
    console.print(f"run directory: {cfg.run_dir}  (step seconds: {timings or 'all done already'})")


@app.command("run")
@config_command()
def run(source: ConfigSource, config: Optional[Path] = ConfigArg,
        checkpoint_every: Optional[int] = CheckpointEveryOpt):
    """Run the whole chain (tokenizer, tokenize, prior, sample, fid), skipping finished steps."""
    _run(config, source, checkpoint_every)


@pipeline_app.command("run")
@config_command()
def pipeline_run(source: ConfigSource, config: Optional[Path] = ConfigArg,
                 checkpoint_every: Optional[int] = CheckpointEveryOpt):
    """Same as `vqgen run`."""
    _run(config, source, checkpoint_every)
