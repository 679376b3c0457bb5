"""The stage-2 table: priors trained on one tokenizer's codes, each sampled with a sweep of sampling controls and
scored the same way, beside the floor of the same protocol (real data, the tokenizer's reconstructions).

    VQGEN_DATA_DIR=PATH/TO/mnist uv run python experiments/prior_table.py -c configs/experiments/mnist.yaml \\
        --tokenizer-dir runs/quantizer_table/vq-e20/tokenizer --tokenizer-name vq --set run_dir=runs/priors-vq \\
        --n 10000 --floor --results results/mnist/priors.json --grid-dir results/mnist

The tokenizer is --tokenizer-dir (a finished one, read where it is), or else the config's own (a file from
configs/tokenizer/ first), trained in the run directory. Its codes go to RUN_DIR/codes/; each prior (--archs) is
trained to the config's budget in prior-ARCH/ (each row lists its test NLL per epoch), then sampled once per
setting: each --cfg-scales value (1 plain conditional, >1 guided, 0 the null class alone: unconditional samples of
the same prior, which its label dropout trained; a prior trained without labels, prior.class_conditional=false,
has only that one) and, for MaskGIT, each --maskgit-steps x --choice-temperatures. A setting's samples go to
samples-ARCH-SETTING/ (seconds: sampling and decoding --n in batches of --sample-batch) and its FID, KID, precision
and recall against the reference split to report-ARCH-SETTING/. --floor adds report-real/: as many train images as
the reference holds, scored against it, and the tokenizer's rFID. Every step is the pipeline's own, so a rerun
skips finished work and a killed run resumes. Rows go to RUN_DIR/prior_table.{json,md} and, merged, to --results
(a Markdown copy beside it); --grid-dir gets samples-ARCH.png, the 64-sample grid of each prior's lowest-FID row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from prior_rows import (best_rows, floor_rows, markdown, prior_facts, row_key, row_order, sample_row,
                        settings_for)
from results_table import merge_rows, timed_step, write_table

os.environ.setdefault("VQGEN_NO_PROGRESS", "1")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True, help="YAML config(s), merged in order")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="dotted override, key=value")
    parser.add_argument("--archs", default="gpt,maskgit,pixelcnn")
    parser.add_argument("--n", type=int, default=10000, help="samples per setting")
    parser.add_argument("--tokenizer-dir", type=Path, default=None, help="a trained tokenizer to use as it is")
    parser.add_argument("--tokenizer-name", default=None, help="its name in the table (default: its quantizer's)")
    parser.add_argument("--cfg-scales", default="0,1,1.5,2,3", help="guidance scales; 0: unconditional")
    parser.add_argument("--maskgit-steps", default="8,12", help="MaskGIT decoding steps to sweep")
    parser.add_argument("--choice-temperatures", default="4.5", help="MaskGIT choice temperatures to sweep")
    parser.add_argument("--maskgit-sweep-scale", type=float, default=None,
                        help="sweep MaskGIT's steps and temperatures at this scale only (default: at every scale)")
    parser.add_argument("--sample-batch", type=int, default=1000, help="samples drawn per batch")
    parser.add_argument("--fid-path", choices=("exact", "fast"), default="exact")
    parser.add_argument("--floor", action="store_true", help="add real-vs-real and the tokenizer's rFID")
    parser.add_argument("--results", type=Path, default=None, help="JSON table to merge the rows into")
    parser.add_argument("--grid-dir", type=Path, default=None, help="where each prior's best grid goes")
    return parser.parse_args()


def numbers(text: str, kind=float) -> list:
    return [kind(item) for item in text.split(",") if item.strip()]


def main() -> None:
    args = parse_args()
    from pipeline import fid as fid_lib
    from pipeline.config import load_config
    from pipeline.core.errors import VqgenError
    from pipeline.core.files import CONFIG_FILE, read_json, write_json, write_text
    from pipeline.core.float_env import flush_denormals
    from pipeline.run_paths import METRICS_FILE, RunPaths
    from pipeline.runner import run_step
    from pipeline.steps import fid, prior, sample, tokenize, tokenizer
    from stage2_prior.persistence import load_prior

    flush_denormals()  # as the command line does, before torch starts its threads
    common = [*args.sets, f"sample.n={args.n}", f"sample.batch_size={args.sample_batch}",
              f"fid.fast={args.fid_path == 'fast'}"]

    def config(*more: str):
        return load_config(args.config, [*common, *more])

    cfg = config()
    fid_lib.check_weights_available(fid_lib.resolve_weights(cfg.fid.inception_weights))  # before any training
    paths = RunPaths(cfg.run_dir, tokenizer=args.tokenizer_dir)
    times = paths.root / "train_seconds.json"
    if args.tokenizer_dir is None:
        timed_step(tokenizer.step(cfg, paths), times)
    elif not tokenizer.is_complete(paths.tokenizer):
        raise VqgenError(f"--tokenizer-dir {args.tokenizer_dir} holds no finished tokenizer")
    for split in ("train", "test"):
        run_step(tokenize.step(cfg, paths, split))
    name = args.tokenizer_name or read_json(paths.tokenizer / CONFIG_FILE)["quantizer"]["name"]
    rows: list[dict] = []
    made: dict[tuple, Path] = {}  # row key -> its sample set, for the grids

    def emit(row: dict, samples: Path | None = None) -> None:
        rows.append(row)
        if samples is not None:
            made[row_key(row)] = samples
        print(json.dumps(row), flush=True)
        if args.results:  # as each row is finished, so a killed run keeps them
            merge_rows(args.results, [row], row_key, row_order)

    if args.floor:
        run_step(fid.real_step(cfg, paths))
        for row in floor_rows(name, read_json(paths.real_report / METRICS_FILE), cfg.fid.feature_path):
            emit(row)
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        cfg = config(f"prior.arch={arch}")
        train_seconds = timed_step(prior.step(cfg, paths, arch), times)
        facts = prior_facts(*load_prior(paths.prior(arch)), paths.prior(arch), train_seconds)
        for setting in settings_for(arch, facts["trained_with_labels"], numbers(args.cfg_scales),
                                    numbers(args.maskgit_steps, int), numbers(args.choice_temperatures),
                                    args.maskgit_sweep_scale):
            cfg = config(f"prior.arch={arch}", *setting.overrides())
            run_step(sample.step(cfg, paths, arch, setting.name))
            report = paths.arch_report(arch, setting.name)
            run_step(fid.step(cfg, paths, arch, out=report, with_rfid=False, setting=setting.name))
            row = sample_row(name, arch, setting, facts, read_json(report / METRICS_FILE), cfg.fid.feature_path)
            emit(row, paths.samples(arch, setting.name))

    table = json.loads(args.results.read_text()) if args.results else sorted(rows, key=row_order)
    if args.grid_dir:
        copy_grids(table, made, args.grid_dir)
    if args.results:
        write_table(args.results, table)
        write_text(args.results.with_suffix(".md"), markdown(table))
    write_json(paths.root / "prior_table.json", sorted(rows, key=row_order))
    write_text(paths.root / "prior_table.md", markdown(sorted(rows, key=row_order)))
    print(markdown(sorted(rows, key=row_order)))


def copy_grids(table: list[dict], made: dict[tuple, Path], grid_dir: Path) -> None:
    """The grid of each prior's lowest-FID row to GRID_DIR/samples-ARCH.png, and that row alone names it. A best
    row from an earlier run, whose samples this run did not make, keeps the grid that run wrote."""
    from pipeline.core.files import atomic_path
    from pipeline.run_paths import GRID_FILE

    for arch, best in best_rows(table).items():
        samples = made.get(row_key(best))
        if samples is None:
            continue
        target = grid_dir / f"samples-{arch}.png"
        with atomic_path(target) as tmp:
            shutil.copyfile(samples / GRID_FILE, tmp)
        for row in table:
            if row["prior"] == arch:
                row.pop("grid", None)
        best["grid"] = str(target)
        print(f"{target}: {arch} on {best['tokenizer']}, cfg {best['cfg_scale']:g}, FID {best['fid']:.2f}")


if __name__ == "__main__":
    from pipeline.core.errors import VqgenError

    try:
        main()
    except VqgenError as err:
        sys.exit(f"error: {err}")
