"""`vqgen bench`: every section in one process, one rich table, one JSON file.

Sections (``--only a,c`` picks some):
  a. quantizer forward+backward, ours vs vector-quantize-pytorch (ms/call)
  b. tokenizer training throughput, our VQ-VAE vs the tutorial one-hot VQ (images/s)
  c. sampling 64 images: GPT with/without KV cache, MaskGIT 8/12 steps, PixelCNN (s)
  d. FID feature extraction, our exact and fast paths vs torch_fidelity on PNG folders (images/s)
  e. peak memory of the nearest-code search up to K=65536 (MiB)
  f. prior training throughput, GPT and MaskGIT as shipped vs the recipe before (tokens/s)
  g. peak memory and images/s of tokenizing a streamed folder, 2,000 vs 20,000 images (MiB)

Also runnable without the CLI: ``uv run --group bench python -m benchmarks.bench --quick``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from .results import Row, render_table, write_json
from .timing import Settings

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench.json"
SECTION_NAMES = {
    "a": "quantizer forward+backward vs vector-quantize-pytorch",
    "b": "tokenizer training vs naive one-hot VQ",
    "c": "sampling 64 images",
    "d": "FID feature extraction",
    "e": "nearest-code search memory",
    "f": "prior training",
    "g": "streamed tokenize memory",
}


def _section_runner(key: str) -> Callable[[Settings], list[Row]]:
    # Imported on demand: `--only e` should not pay for importing transformers or torch-fidelity.
    from importlib import import_module

    module = {"a": "quantizer_bench", "b": "tokenizer_bench", "c": "sampling_bench", "d": "fid_bench",
              "e": "memory_bench", "f": "prior_train_bench",
              "g": "streamed_tokenize_bench"}[key]
    return import_module(f"{__package__}.{module}").run


def parse_sections(only: str | None) -> list[str]:
    if not only:
        return list(SECTION_NAMES)
    chosen = [part.strip().lower() for part in only.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in SECTION_NAMES]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTION_NAMES)}")
    return chosen


def environment(settings: Settings, sections: list[str]) -> dict:
    from .quantizer_bench import peer_version

    peer = peer_version()
    env = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "device": settings.device,
        "quick": settings.quick,
        "compile": settings.compile,
        "warmup": settings.warmup,
        "repeats": settings.repeats,
        "sections": sections,
        "peer": f"vector-quantize-pytorch {peer}" if peer else "vector-quantize-pytorch not installed",
    }
    if settings.cuda:
        env["gpu"] = torch.cuda.get_device_name()
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_bench(
    sections: list[str],
    settings: Settings,
    json_path: Path = DEFAULT_JSON,
    console=None,
) -> list[Row]:
    """Run the chosen sections, print the table as rows arrive, write the JSON; returns the rows."""
    from rich.console import Console

    # Piped into a file (the README table), rich would wrap at 80 columns; give it room instead.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    if settings.cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    torch.set_num_threads(settings.threads)
    # torch-fidelity's direct path opens 4 loader workers on any CPU; that is its default, measured as is.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    env = environment(settings, sections)
    console.print(f"vqgen bench: sections {','.join(sections)} on {settings.device} "
                  f"({env['cpu']}, {env['torch_threads']} torch threads, torch {env['torch']}, {env['peer']})")
    rows: list[Row] = []
    for key in sections:
        console.print(f"[bold]{key}. {SECTION_NAMES[key]}[/] ...")
        start = time.perf_counter()
        section_rows = _section_runner(key)(settings)
        if settings.quick:  # tiny shapes say nothing about the targets, which are for the full sizes
            for row in section_rows:
                row.target = None
        rows.extend(section_rows)
        env[f"section_{key}_seconds"] = round(time.perf_counter() - start, 1)
        write_json(json_path, rows, env)  # after every section, so an interrupted run keeps what it measured
    console.print(render_table(rows, f"vqgen bench ({'quick, ' if settings.quick else ''}{settings.device}, "
                                     f"{env['date']})"))
    console.print(f"JSON: {json_path}")
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (smoke test)")
    parser.add_argument("--only", default=None, help="comma-separated sections, e.g. a,b")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the tokenizer-training row")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5; quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--inception-weights", default=None,
                        help="Inception weights for section d (default $VQGEN_INCEPTION_WEIGHTS)")
    return parser


def make_settings(quick: bool = False, device: str = "cpu", compile: bool = False, repeats: int | None = None,
                  threads: int = 2, inception_weights: str | None = None) -> Settings:
    return Settings(device=device, quick=quick, warmup=0 if quick else 1, repeats=repeats or (1 if quick else 5),
                    threads=threads, compile=compile, inception_weights=inception_weights,
                    row_budget_s=30.0 if quick else 120.0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = make_settings(args.quick, args.device, args.compile, args.repeats, args.threads,
                             args.inception_weights)
    run_bench(parse_sections(args.only), settings, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
