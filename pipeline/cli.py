"""The ``vqgen`` command line. Every command reads the same config (``-c FILE`` merged in order, then
``--set key=value``); its own options are shortcuts for those overrides. User errors print one clear message
and exit with code 2; ``--debug`` shows the traceback."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

from .core.errors import VqgenError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="vqgen: VQ-VAE-family tokenizers, PixelCNN/GPT/MaskGIT priors, sampling and FID reports.")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train and evaluate stage-1 tokenizers.")
prior_app = typer.Typer(no_args_is_help=True, help="Train stage-2 priors over code datasets.")
pipeline_app = typer.Typer(no_args_is_help=True, help="The whole chain from one config file.")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(prior_app, name="prior")
app.add_typer(pipeline_app, name="pipeline")
console = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vqgen {version('vqgen')}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """vqgen: VQ-VAE-family tokenizers, PixelCNN/GPT/MaskGIT priors, sampling and FID reports."""

ConfigOpt = typer.Option([], "--config", "-c", help="YAML config file(s), merged in order.")
SetOpt = typer.Option([], "--set", help="Override a config key: --set prior.gpt.n_layer=8 (repeatable).")
RunDirOpt = typer.Option(None, "--run-dir", help="Run directory (default: run_dir from the config).")
DebugOpt = typer.Option(False, "--debug", help="Show the full traceback on errors.")
DataOpt = typer.Option(None, "--data", help="Dataset: digits, mnist, fashion-mnist, cifar10, imagefolder.")
DataRootOpt = typer.Option(None, "--data-root", help="Dataset folder (else data.root or $VQGEN_DATA_DIR).")


def user_errors(func: Callable) -> Callable:
    """Turn VqgenError (and Ctrl-C) into a short message and exit code; tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False) or os.environ.get("VQGEN_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except VqgenError as err:
            if debug:
                raise
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; run the same command again to resume from the last checkpoint[/]")
            raise typer.Exit(130) from None
        except OSError as err:  # a full disk or a read-only folder met outside vqgen's own writers
            import errno

            if debug or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            from .core.files import write_error

            console.print(f"[bold red]error:[/] {write_error(err.filename or 'a file', err)}", highlight=False,
                          soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _overrides(pairs: dict[str, object]) -> list[str]:
    out = []
    for key, value in pairs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        out.append(f"{key}={value}")
    return out


def _config(configs: List[Path], sets: List[str], run_dir: Optional[Path], **shortcuts):
    missing = [str(path) for path in configs if not Path(path).is_file()]
    if missing:  # before the config models import torch: a typo answers at once
        raise VqgenError(f"config file {', '.join(missing)} does not exist")
    from .config import load_config

    extra = _overrides(shortcuts)
    if run_dir is not None:
        extra.append(f"run_dir={run_dir}")
    return load_config(list(configs), list(sets) + extra)


def _trainer_shortcuts(section: str, devices, precision, max_epochs, max_steps, accelerator, profiler,
                       accumulate) -> dict:
    return {f"{section}.train.devices": devices, f"{section}.train.precision": precision,
            f"{section}.train.max_epochs": max_epochs, f"{section}.train.max_steps": max_steps,
            f"{section}.train.accelerator": accelerator, f"{section}.train.profiler": profiler,
            f"{section}.train.accumulate_grad_batches": accumulate}


DevicesOpt = typer.Option(None, "--devices", help="Lightning devices (1, 2, auto, ...).")
PrecisionOpt = typer.Option(None, "--precision", help="Lightning precision (32-true, bf16-mixed, 16-mixed).")
MaxEpochsOpt = typer.Option(None, "--max-epochs")
MaxStepsOpt = typer.Option(None, "--max-steps")
AcceleratorOpt = typer.Option(None, "--accelerator", help="cpu, gpu, auto.")
ProfilerOpt = typer.Option(None, "--profiler", help="Lightning profiler: simple, advanced, pytorch.")
AccumulateOpt = typer.Option(None, "--accumulate", help="Gradient accumulation batches.")


@tokenizer_app.command("train")
@user_errors
def tokenizer_train(
    configs: List[Path] = ConfigOpt, sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
    data: Optional[str] = DataOpt, data_root: Optional[str] = DataRootOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Tokenizer directory (default RUN_DIR/tokenizer)."),
    devices: Optional[str] = DevicesOpt, precision: Optional[str] = PrecisionOpt,
    max_epochs: Optional[int] = MaxEpochsOpt, max_steps: Optional[int] = MaxStepsOpt,
    accelerator: Optional[str] = AcceleratorOpt, profiler: Optional[str] = ProfilerOpt,
    accumulate: Optional[int] = AccumulateOpt, debug: bool = DebugOpt,
):
    """Train a tokenizer; writes config.json + model.safetensors (resumes from checkpoints/last.ckpt)."""
    cfg = _config(configs, sets, run_dir, **{"data.name": data, "data.root": data_root},
                  **_trainer_shortcuts("tokenizer", devices, precision, max_epochs, max_steps, accelerator,
                                       profiler, accumulate))
    from . import steps  # after the config check: it imports torch and Lightning
    target = out or steps.RunPaths(cfg.run_dir).tokenizer
    steps.train_tokenizer(cfg, target)
    console.print(f"tokenizer -> {target}")


@tokenizer_app.command("eval")
@user_errors
def tokenizer_eval(
    configs: List[Path] = ConfigOpt, sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
    data: Optional[str] = DataOpt, data_root: Optional[str] = DataRootOpt,
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer directory."),
    split: str = typer.Option("test", "--split"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default TOKENIZER/eval)."),
    debug: bool = DebugOpt,
):
    """MSE, PSNR, SSIM, perplexity and usage on a split; eval.json, reconstructions.png, codebook_usage.png."""
    from rich.table import Table

    if split not in ("train", "test"):
        raise VqgenError(f"--split must be train or test, got {split!r}")
    cfg = _config(configs, sets, run_dir, **{"data.name": data, "data.root": data_root})
    from stage1_tokenizer.evaluate import evaluate_tokenizer, low_usage_message, reconstruction_grid, usage_histogram
    from stage1_tokenizer.tokenizer import Tokenizer

    from . import steps
    from .core.files import write_json
    from .datasets import load_split

    tok_dir = tokenizer or steps.RunPaths(cfg.run_dir).tokenizer
    model = Tokenizer.load(tok_dir)
    images = load_split(cfg.data, split)
    metrics, counts = evaluate_tokenizer(model, images)
    target = out or tok_dir / "eval"
    target.mkdir(parents=True, exist_ok=True)
    reconstruction_grid(model, images, target / "reconstructions.png")
    usage_histogram(counts, target / "codebook_usage.png")
    write_json(target / "eval.json", {"tokenizer": str(tok_dir), "data": f"{cfg.data.name}/{split}", **metrics})
    table = Table(title=f"tokenizer {tok_dir} on {cfg.data.name}/{split} ({metrics['images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("mse", "psnr", "ssim"):
        if metrics[key] is not None:
            table.add_row(key, f"{metrics[key]:.4f}")
    for level, stats in metrics["levels"].items():
        table.add_row(f"{level} perplexity", f"{stats['perplexity']:.1f} of {sum(stats['codebook_sizes'])}")
        table.add_row(f"{level} usage", f"{stats['usage']:.3f}")
    table.add_row("black pixels (recon / data)", f"{metrics['black_share']:.1%} / {metrics['black_share_data']:.1%}")
    Console().print(table)
    for level, stats in metrics["levels"].items():
        warning = low_usage_message(level, stats["usage"], max(stats["codebook_sizes"]), f"{cfg.data.name}/{split}")
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"wrote {target}/eval.json, reconstructions.png, codebook_usage.png")


@app.command("tokenize")
@user_errors
def tokenize(
    configs: List[Path] = ConfigOpt, sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
    data: Optional[str] = DataOpt, data_root: Optional[str] = DataRootOpt,
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer directory."),
    out: Optional[Path] = typer.Option(None, "--out", help="Codes root; splits go to OUT/train, OUT/test."),
    split: List[str] = typer.Option(["train", "test"], "--split"),
    debug: bool = DebugOpt,
):
    """Encode image splits into code datasets (meta.json + codes.safetensors per split)."""
    cfg = _config(configs, sets, run_dir, **{"data.name": data, "data.root": data_root})
    from . import steps  # after the config check: it imports torch and Lightning
    paths = steps.RunPaths(cfg.run_dir)
    for name in split:
        if name not in ("train", "test"):
            raise VqgenError(f"--split must be train or test, got {name!r}")
    steps.tokenize(cfg, tokenizer or paths.tokenizer, out or paths.root / "codes", splits=tuple(split))


@prior_app.command("train")
@user_errors
def prior_train(
    configs: List[Path] = ConfigOpt, sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
    arch: Optional[str] = typer.Option(None, "--arch", help="gpt, pixelcnn or maskgit."),
    codes: Optional[Path] = typer.Option(None, "--codes", help="Codes root holding train/ and test/."),
    out: Optional[Path] = typer.Option(None, "--out", help="Prior directory (default RUN_DIR/prior-ARCH)."),
    devices: Optional[str] = DevicesOpt, precision: Optional[str] = PrecisionOpt,
    max_epochs: Optional[int] = MaxEpochsOpt, max_steps: Optional[int] = MaxStepsOpt,
    accelerator: Optional[str] = AcceleratorOpt, profiler: Optional[str] = ProfilerOpt,
    accumulate: Optional[int] = AccumulateOpt, debug: bool = DebugOpt,
):
    """Train a prior on a code dataset; writes config.json + model.safetensors."""
    cfg = _config(configs, sets, run_dir, **{"prior.arch": arch},
                  **_trainer_shortcuts("prior", devices, precision, max_epochs, max_steps, accelerator,
                                       profiler, accumulate))
    from . import steps  # after the config check: it imports torch and Lightning
    paths = steps.RunPaths(cfg.run_dir)
    target = out or paths.prior(cfg.prior.arch)
    steps.train_prior(cfg, codes or paths.root / "codes", target)
    console.print(f"prior -> {target}")


@app.command("sample")
@user_errors
def sample(
    configs: List[Path] = ConfigOpt, sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
    n: Optional[int] = typer.Option(None, "--n", help="Number of samples."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Which prior of the run to sample."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="Prior directory."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer directory."),
    out: Optional[Path] = typer.Option(None, "--out", help="Samples directory (default RUN_DIR/samples-ARCH)."),
    label: Optional[str] = typer.Option(None, "--label", help="Class index, 'all' (even over classes) or 'none'."),
    temperature: Optional[float] = typer.Option(None, "--temperature"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale", help="Classifier-free guidance scale."),
    decode_steps: Optional[int] = typer.Option(None, "--steps", help="MaskGIT decoding steps."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="MaskGIT mask schedule: cosine, linear, "
                                                                    "square, arccos."),
    choice_temperature: Optional[float] = typer.Option(None, "--choice-temperature",
                                                       help="MaskGIT Gumbel noise on confidences (annealed)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    npz: Optional[Path] = typer.Option(None, "--npz", help="Also write the samples as an ADM-evaluator .npz "
                                                           "(arr_0: uint8 [N, H, W, 3])."),
    debug: bool = DebugOpt,
):
    """Sample codes from a prior and decode them: grid.png, png/, codes.safetensors (and --npz)."""
    label_value = None if label is None else ("null" if label == "none" else label)
    cfg = _config(configs, sets, run_dir, **{
        "sample.n": n, "prior.arch": arch, "sample.label": label_value, "sample.temperature": temperature,
        "sample.top_k": top_k, "sample.top_p": top_p, "sample.cfg_scale": cfg_scale, "sample.seed": seed,
        "sample.steps": decode_steps, "sample.schedule": schedule, "sample.choice_temperature": choice_temperature})
    from . import steps  # after the config check: it imports torch and Lightning
    paths = steps.RunPaths(cfg.run_dir)
    steps.sample(cfg, prior or paths.prior(cfg.prior.arch), tokenizer or paths.tokenizer,
                 out or paths.samples(cfg.prior.arch), npz=npz)


@app.command("fid")
@user_errors
def fid(
    configs: List[Path] = ConfigOpt, sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
    data: Optional[str] = DataOpt, data_root: Optional[str] = DataRootOpt,
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
        None, "--fast/--exact", help="Feature path: int8 (fast; FID within about 1% from ~1,000 images a side; "
                                     "needs the fast-fid group) or exact (default, torch-fidelity's features)."),
    debug: bool = DebugOpt,
):
    """FID/KID/precision/recall between any two image sets (a run's samples and the test split by default), and
    rFID of the tokenizer when the reference is a dataset split."""
    # Either side may be a split name or a path: pipeline.image_sources tells them apart.
    cfg = _config(configs, sets, run_dir, **{"data.name": data, "data.root": data_root, "prior.arch": arch,
                                            "fid.reference": reference, "fid.inception_weights": inception_weights,
                                            "fid.fast": fast})
    from . import steps  # after the config check: it imports torch and Lightning
    paths = steps.RunPaths(cfg.run_dir)
    tok = None if str(tokenizer) == "none" else (tokenizer or paths.tokenizer)
    result = steps.fid_report(cfg, samples or paths.samples(cfg.prior.arch), tok, out or paths.report)
    _print_metrics(result)


def _print_metrics(result: dict) -> None:
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

    from .run_summary import collect_run, write_comparison, write_run_page

    infos = []
    for run_dir in runs:
        info = collect_run(run_dir)
        write_run_page(info, run_dir / "summary")
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


def _run(config: Path, sets: List[str], run_dir: Optional[Path]):
    cfg = _config([config], sets, run_dir)
    from .runner import run_pipeline  # after the config check: it imports torch and Lightning

    timings = run_pipeline(cfg)
    report = Path(cfg.run_dir) / "report" / "metrics.json"
    if report.exists():
        from .core.files import read_json

        _print_metrics(read_json(report))
    console.print(f"run directory: {cfg.run_dir}  (step seconds: {timings or 'all done already'})")


@app.command("run")
@user_errors
def run(config: Path = typer.Argument(..., help="Experiment config, e.g. configs/quickstart.yaml."),
        sets: List[str] = SetOpt, run_dir: Optional[Path] = RunDirOpt, debug: bool = DebugOpt):
    """Run the whole chain (tokenizer, tokenize, prior, sample, fid), skipping finished steps."""
    _run(config, sets, run_dir)


@pipeline_app.command("run")
@user_errors
def pipeline_run(config: Path = typer.Argument(...), sets: List[str] = SetOpt,
                 run_dir: Optional[Path] = RunDirOpt, debug: bool = DebugOpt):
    """Same as `vqgen run`."""
    _run(config, sets, run_dir)


@app.command("bench")
@user_errors
def bench(quick: bool = typer.Option(False, "--quick", help="Tiny sizes, one repeat (smoke test)."),
          only: Optional[str] = typer.Option(None, "--only", help="Sections to run, e.g. a,b (default: all a-e)."),
          json_path: Optional[Path] = typer.Option(None, "--json",
                                                   help="Results JSON (default benchmarks/results/bench.json)."),
          device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
          compile_model: bool = typer.Option(False, "--compile", help="torch.compile the tokenizer-training row."),
          repeats: Optional[int] = typer.Option(None, "--repeats", help="Timed repeats per row (default 5)."),
          inception_weights: Optional[str] = typer.Option(
              None, "--inception-weights", help="FID Inception weights (default $VQGEN_INCEPTION_WEIGHTS)."),
          debug: bool = DebugOpt):
    """Benchmark ours against vector-quantize-pytorch and naive baselines (needs `uv sync --group bench`)."""
    try:  # benchmarks/ lives beside the packages in the checkout; it is not part of the installed wheel
        from benchmarks.bench import DEFAULT_JSON, make_settings, parse_sections, run_bench
    except ImportError as err:
        raise VqgenError(f"vqgen bench runs from a source checkout (benchmarks/ not importable: {err})") from None
    import torch

    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise VqgenError(f"--device must be cpu or cuda (with a CUDA device present), got {device!r}")
    try:
        sections = parse_sections(only)
    except ValueError as err:
        raise VqgenError(str(err)) from None
    settings = make_settings(quick, device, compile_model, repeats, inception_weights=inception_weights)
    run_bench(sections, settings, json_path or DEFAULT_JSON)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
