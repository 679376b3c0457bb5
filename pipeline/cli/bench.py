"""``vqgen bench``: ours against vector-quantize-pytorch and naive baselines (benchmarks/ in a source checkout)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core.errors import VqgenError
from .apps import app
from .errors import user_errors
from .options import DebugOpt


@app.command("bench")
@user_errors
def bench(quick: bool = typer.Option(False, "--quick", help="Tiny sizes, one repeat (smoke test)."),
          only: Optional[str] = typer.Option(None, "--only", help="Sections to run, e.g. a,b (default: all a-g)."),
          json_path: Optional[Path] = typer.Option(None, "--json",
                                                   help="Results JSON (default benchmarks/results/bench.json)."),
          device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
          compile_model: bool = typer.Option(False, "--compile", help="torch.compile the tokenizer-training row."),
          repeats: Optional[int] = typer.Option(None, "--repeats", help="Timed repeats per row (default 5)."),
          inception_weights: Optional[str] = typer.Option(
              None, "--inception-weights", help="FID Inception weights (default $VQGEN_INCEPTION_WEIGHTS)."),
          debug: bool = DebugOpt):
    """Benchmark ours against vector-quantize-pytorch and naive baselines (needs `uv sync --group bench`)."""
    wrong_device = VqgenError(f"--device must be cpu or cuda (with a CUDA device present), got {device!r}")
    if device not in ("cpu", "cuda"):  # before benchmarks/ imports torch
        raise wrong_device
    try:  # benchmarks/ lives beside the packages in the checkout; it is not part of the installed wheel
        from benchmarks.bench import DEFAULT_JSON, make_settings, parse_sections, run_bench
    except ImportError as err:
        raise VqgenError(f"vqgen bench runs from a source checkout (benchmarks/ not importable: {err})") from None
    import torch

    from ..core.float_env import flush_denormals

    flush_denormals()  # as every other command runs
    if device == "cuda" and not torch.cuda.is_available():
        raise wrong_device
    try:
        sections = parse_sections(only)
    except ValueError as err:
        raise VqgenError(str(err)) from None
    settings = make_settings(quick, device, compile_model, repeats, inception_weights=inception_weights)
    run_bench(sections, settings, json_path or DEFAULT_JSON)
