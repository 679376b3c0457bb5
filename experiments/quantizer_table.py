"""The stage-1 table: every tokenizer config in configs/tokenizer/ trained for one budget on MNIST, then evaluated
on the whole MNIST test split: PSNR, SSIM, perplexity, usage, the share of exactly black pixels, and rFID
(reconstructions against the test images). Rows are merged into a JSON table as each tokenizer finishes.

    uv run python experiments/quantizer_table.py --data-root PATH/TO/mnist --epochs 20 \\
        --results results/mnist/tokenizers.json

PATH/TO/mnist is the folder torchvision's MNIST reads (it holds MNIST/raw/); with network access it is
downloaded there. Each tokenizer trains in OUT/<name>-e<epochs>/ through the pipeline's own step, so a killed run
resumes from its last checkpoint and a finished one is reused. rFID needs the Inception weights
($VQGEN_INCEPTION_WEIGHTS or --inception-weights); --rfid 0 skips it.

Other data: layer a config after each tokenizer's own and point --data-root at it, e.g. the CIFAR-10 table from an
ImageFolder copy (train/<class>/*, test/<class>/*):

    uv run python experiments/quantizer_table.py -c configs/experiments/cifar10.yaml --set data.name=imagefolder \
        --data-root PATH/TO/cifar10 --epochs 5 --only vq,vqgan --results results/cifar10/tokenizers.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from results_table import command_line, machine_label, merge_rows

os.environ.setdefault("VQGEN_NO_PROGRESS", "1")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per tokenizer")
    parser.add_argument("--steps", type=int, default=-1, help="stop after this many steps instead (-1: epochs)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="every tokenizer's batch (default: 128, or the batch its config files set: sq's 32)")
    parser.add_argument("--only", default="", help="comma-separated config names, in this order (default: all)")
    parser.add_argument("-c", "--config", action="append", type=Path, default=[],
                        help="config file layered after each tokenizer's own (e.g. configs/experiments/cifar10.yaml)")
    parser.add_argument("--set", action="append", default=[], help="extra config override, key.path=value")
    parser.add_argument("--tag", default="", help="suffix of the quantizer name in the table (for variants)")
    parser.add_argument("--rfid", type=int, default=10000, help="reconstructions for rFID (0: skip)")
    parser.add_argument("--inception-weights", default=None)
    parser.add_argument("--fid-path", choices=("exact", "fast"), default="exact",
                        help="rFID features: exact (torch-fidelity's) or fast (int8, approximate)")
    parser.add_argument("--out", type=Path, default=Path("runs/quantizer_table"), help="run folders")
    parser.add_argument("--results", type=Path, default=None, help="JSON table to merge the rows into")
    return parser.parse_args()


def batch_size(args: argparse.Namespace, config_files: list[Path]) -> int:
    """--batch-size, else the last of the config files that sets one (they layer in order), else the table's 128."""
    import yaml

    from_files = 128
    for path in config_files:
        train = ((yaml.safe_load(path.read_text()) or {}).get("tokenizer") or {}).get("train") or {}
        from_files = train.get("batch_size", from_files)
    return args.batch_size or from_files


def main() -> None:
    args = parse_args()
    import torch

    from pipeline import fid as fid_lib
    from pipeline.config import load_config
    from pipeline.core.files import CONFIG_FILE, read_json
    from pipeline.core.float_env import flush_denormals
    from pipeline.core.images import to_float, to_uint8
    from pipeline.datasets import load_split
    from pipeline.image_sources import load_images
    from pipeline.run_paths import RunPaths
    from pipeline.runner import run_step
    from pipeline.steps import tokenizer as tokenizer_step
    from stage1_tokenizer.evaluate import evaluate_tokenizer
    from stage1_tokenizer.tokenizer import Tokenizer

    flush_denormals()  # as the command line does, before torch starts its threads
    configs = {path.stem: path for path in sorted(Path("configs/tokenizer").glob("*.yaml"))}
    names = args.only.split(",") if args.only else list(configs)
    unknown = [name for name in names if name not in configs]
    if unknown:
        sys.exit(f"no config named {', '.join(unknown)} in configs/tokenizer/ (have: {', '.join(configs)})")
    command = command_line()
    weights = fid_lib.resolve_weights(args.inception_weights) if args.rfid else None
    if args.rfid:
        fid_lib.check_weights_available(weights)
    test_data = reference = None
    for name in names:
        budget = f"s{args.steps}" if args.steps > 0 else f"e{args.epochs}"
        out = args.out / f"{name}{args.tag}-{budget}"
        cfg = load_config([configs[name], *args.config], [f"data.root={args.data_root}", "data.download=false",
                                            f"tokenizer.train.max_epochs={args.epochs if args.steps < 0 else -1}",
                                            f"tokenizer.train.max_steps={args.steps}",
                                            f"tokenizer.train.batch_size={batch_size(args, [configs[name], *args.config])}",
                                            f"run_dir={out}",
                                            *args.set])
        test_data = test_data or load_split(cfg.data, "test")
        paths = RunPaths(cfg.run_dir)
        tokenizer_dir = paths.tokenizer
        timing_file = paths.root / "train_seconds.json"
        seconds = run_step(tokenizer_step.step(cfg, paths))
        if seconds is not None:
            earlier = read_json(timing_file)["seconds"] if timing_file.exists() else 0.0  # time before a resume
            timing_file.write_text(json.dumps({"seconds": earlier + seconds}))
        tokenizer = Tokenizer.load(tokenizer_dir)
        metrics, _ = evaluate_tokenizer(tokenizer, test_data)
        recon = torch.cat([to_uint8(tokenizer.reconstruct(to_float(chunk))) for chunk in test_data.images.split(500)])
        levels = metrics["levels"]  # one for VQ-VAE, top and bottom for VQ-VAE-2: shown as "top / bottom"
        provenance = read_json(tokenizer_dir / CONFIG_FILE).get("provenance", {})
        row = {"quantizer": name + args.tag, "epochs": provenance.get("epochs", args.epochs),
               "steps": provenance.get("steps"), "batch_size": cfg.tokenizer.train.batch_size,
               "codebook": " / ".join("x".join(map(str, level["codebook_sizes"])) for level in levels.values()),
               "psnr": round(metrics["psnr"], 3), "ssim": round(metrics["ssim"], 4),
               "perplexity": [round(level["perplexity"], 1) for level in levels.values()],
               "usage": [round(level["usage"], 4) for level in levels.values()],
               "black_share": round(metrics["black_share"], 4), "rfid": None,
               # the clock kept in the checkpoints counts every resumed run; the timing file, older models' time
               "train_seconds": provenance.get("train_seconds") or (
                   round(read_json(timing_file)["seconds"], 1) if timing_file.exists() else None)}
        if args.rfid:
            n = min(args.rfid, len(test_data))
            reference = reference or load_images("test", cfg.data, None, fid_lib.weights_label(weights)["sha256"])
            row["rfid"] = round(fid_lib.compute_metrics(recon[:n], reference.images, reference.cache_name, weights,
                                                        precision_recall=False, feature_path=args.fid_path)["fid"], 3)
            row["rfid_count"] = f"{n} reconstructions vs {len(reference.images)} test images"
            row["fid_path"] = args.fid_path
        row["machine"] = machine_label()
        row["command"] = command
        print(json.dumps(row), flush=True)
        if args.results:
            # A row marked "run": N (the same command run again, published beside the first) is never replaced.
            merge_rows(args.results, [row], key=lambda r: (r["quantizer"], r["epochs"], r.get("steps"), r.get("run")),
                       order=lambda r: (r["epochs"], r["quantizer"], r.get("run") or 1))


if __name__ == "__main__":
    main()
