"""Stage-2 commands: ``vqgen prior train`` and ``vqgen sample``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..option_checks import check_exists, check_label, check_npz_name
from .apps import app, prior_app
from .options import ConfigSource, TokenizerOpt, config_command, record_config

console = Console(stderr=True)


@prior_app.command("train")
@config_command(trainer="prior")
def prior_train(
    source: ConfigSource,
    arch: Optional[str] = typer.Option(None, "--arch", help="gpt, pixelcnn or maskgit."),
    codes: Optional[Path] = typer.Option(None, "--codes", help="Codes root holding train/ and test/."),
    out: Optional[Path] = typer.Option(None, "--out", help="Prior directory (default RUN_DIR/prior-ARCH)."),
):
    """Train a prior on a code dataset; writes config.json + model.safetensors."""
    check_exists(codes, "--codes")
    cfg = source.load(**{"prior.arch": arch})
    from ..run_paths import RunPaths  # after the config check: the steps import torch and Lightning
    from ..steps import prior as step

    paths = RunPaths(cfg.run_dir)
    target = out or paths.prior(cfg.prior.arch)
    step.run(cfg, codes or paths.codes_root, target)
    record_config(cfg, target)
    console.print(f"prior -> {target}")


@app.command("sample")
@config_command()
def sample(
    source: ConfigSource,
    n: Optional[int] = typer.Option(None, "--n", help="Number of samples."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Which prior of the run to sample."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="Prior directory."),
    tokenizer: Optional[Path] = TokenizerOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Samples directory (default RUN_DIR/samples-ARCH)."),
    label: Optional[str] = typer.Option(None, "--label", help="Class index, 'all' (even over classes) or 'none'."),
    temperature: Optional[float] = typer.Option(
        None, "--temperature", help="Softmax temperature of the prior's logits (default: sample.temperature, 1.0)."),
    top_k: Optional[int] = typer.Option(None, "--top-k",
                                        help="Sample from the k likeliest codes only (default: sample.top_k, all)."),
    top_p: Optional[float] = typer.Option(
        None, "--top-p", help="Nucleus sampling: the likeliest codes up to this mass (default: sample.top_p, off)."),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale", help="Classifier-free guidance scale."),
    decode_steps: Optional[int] = typer.Option(None, "--steps", help="MaskGIT decoding steps."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="MaskGIT mask schedule: cosine, linear, "
                                                                    "square, arccos."),
    choice_temperature: Optional[float] = typer.Option(None, "--choice-temperature",
                                                       help="MaskGIT Gumbel noise on confidences (annealed)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed (default: sample.seed of the config)."),
    npz: Optional[Path] = typer.Option(None, "--npz", help="Also write the samples as an ADM-evaluator .npz "
                                                           "(arr_0: uint8 [N, H, W, 3])."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Processes sharing the batches (the same samples "
                                                                  "however many)."),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="cpu, or cuda (process r on cuda:r)."),
):
    """Sample codes from a prior and decode them: grid.png, png/, codes.safetensors (and --npz)."""
    check_label(label)
    check_npz_name(npz)
    check_exists(prior, "--prior")
    check_exists(tokenizer, "--tokenizer")
    label_value = None if label is None else ("null" if label == "none" else label)
    cfg = source.load(**{
        "sample.n": n, "prior.arch": arch, "sample.label": label_value, "sample.temperature": temperature,
        "sample.top_k": top_k, "sample.top_p": top_p, "sample.cfg_scale": cfg_scale, "sample.seed": seed,
        "sample.steps": decode_steps, "sample.schedule": schedule, "sample.choice_temperature": choice_temperature,
        "sample.devices": devices, "sample.accelerator": accelerator})
    from ..run_paths import RunPaths  # after the config check: the steps import torch and Lightning
    from ..steps import sample as step

    paths = RunPaths(cfg.run_dir)
    target = out or paths.samples(cfg.prior.arch)
    step.run(cfg, prior or paths.prior(cfg.prior.arch), tokenizer or paths.tokenizer, target, npz=npz)
    record_config(cfg, target)
