"""The stage-1 comparison: every quantizer config in configs/tokenizer/ trained for the same short budget on
MNIST, then evaluated on the MNIST test split (PSNR, SSIM, perplexity, usage). Writes JSON and a Markdown table.

    uv run python experiments/quantizer_table.py --data-root PATH/TO/mnist --steps 300

PATH/TO/mnist is the folder torchvision's MNIST reads (it holds MNIST/raw/); with network access it is
downloaded there. Each tokenizer goes to OUT/<name>/ and is reused on a rerun when already finished.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("VQGEN_NO_PROGRESS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--steps", type=int, default=300, help="training steps per quantizer (batch 128)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("runs/quantizer_table"))
    parser.add_argument("--only", default="", help="comma-separated config names (default: all)")
    args = parser.parse_args()

    import torch

    from pipeline import steps
    from pipeline.config import load_config
    from pipeline.datasets import load_split
    from stage1_tokenizer.evaluate import evaluate_tokenizer
    from stage1_tokenizer.tokenizer import Tokenizer

    configs = sorted(Path("configs/tokenizer").glob("*.yaml"))
    if args.only:
        configs = [c for c in configs if c.stem in args.only.split(",")]
    results = []
    test_data = None
    for config in configs:
        out = args.out / config.stem
        cfg = load_config([config], [f"data.root={args.data_root}", "data.download=false",
                                     f"tokenizer.train.max_steps={args.steps}", "tokenizer.train.max_epochs=-1",
                                     f"tokenizer.train.batch_size={args.batch_size}", f"run_dir={out}"])
        test_data = test_data or load_split(cfg.data, "test")
        started = time.perf_counter()
        if steps.recorded_fingerprint(out / "tokenizer" / "config.json") != steps.tokenizer_fingerprint(cfg):
            steps.train_tokenizer(cfg, out / "tokenizer")
        seconds = time.perf_counter() - started
        metrics, _ = evaluate_tokenizer(Tokenizer.load(out / "tokenizer"), test_data)
        levels = metrics["levels"]  # one for VQ-VAE, top and bottom for VQ-VAE-2: shown as "top / bottom"
        row = {"quantizer": config.stem,
               "codebook": " / ".join("x".join(map(str, level["codebook_sizes"])) for level in levels.values()),
               "psnr": metrics["psnr"], "ssim": metrics["ssim"],
               "perplexity": [level["perplexity"] for level in levels.values()],
               "usage": [level["usage"] for level in levels.values()], "train_seconds": round(seconds, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "table.json"
    if table.exists():  # `--only` redoes some rows: keep the others when they were made with the same budget
        earlier = json.loads(table.read_text())
        if (earlier.get("steps"), earlier.get("batch_size")) == (args.steps, args.batch_size):
            redone = {row["quantizer"] for row in results}
            results = sorted([r for r in earlier["results"] if r["quantizer"] not in redone] + results,
                             key=lambda row: row["quantizer"])
    meta = {"steps": args.steps, "batch_size": args.batch_size, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "results": results}
    (args.out / "table.json").write_text(json.dumps(meta, indent=2))
    lines = [f"MNIST test split, {args.steps} steps of batch {args.batch_size}, {torch.get_num_threads()} CPU threads",
             "", "| quantizer | codes | PSNR (dB) | SSIM | perplexity | usage | train s |", "|---|---|---|---|---|---|---|"]
    joined = lambda values, spec: " / ".join(format(v, spec) for v in values)  # noqa: E731
    lines += [f"| {r['quantizer']} | {r['codebook']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
              f"{joined(r['perplexity'], '.1f')} | {joined(r['usage'], '.3f')} | {r['train_seconds']} |"
              for r in results]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
