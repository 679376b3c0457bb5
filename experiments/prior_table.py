"""The stage-2 comparison: one tokenizer, every prior trained on its codes, each sampled and scored the same way.

    uv run python experiments/prior_table.py -c configs/tokenizer/vq.yaml -c configs/experiments/mnist.yaml --n 10000

For each prior architecture (``--archs``, default gpt,maskgit,pixelcnn) in the config's run directory:
the tokenizer and the code datasets are made once (reused when finished, as `vqgen run` does), then
``prior-ARCH/`` is trained, the time to sample 64 images is measured on a separate call, ``--n`` samples go to
``samples-ARCH/`` and FID/KID/precision/recall against the reference split to ``report-ARCH/``. The table
(test NLL in bits per code, FID, KID, precision, recall, seconds per 64 samples, training seconds) is printed and
written to RUN_DIR/prior_table.{json,md}. Finished steps are skipped on a rerun, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("VQGEN_NO_PROGRESS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True, help="YAML config(s), merged in order")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="dotted override, key=value")
    parser.add_argument("--archs", default="gpt,maskgit,pixelcnn")
    parser.add_argument("--n", type=int, default=10000, help="samples per prior for FID")
    args = parser.parse_args()

    import torch

    from pipeline.config import load_config
    from pipeline.core.files import read_json, write_json, write_text
    from pipeline.run_paths import METRICS_FILE, RunPaths
    from pipeline.runner import run_step
    from pipeline.steps import fid, prior, sample, tokenize, tokenizer
    from stage2_prior.config import SampleControls
    from stage2_prior.persistence import load_prior

    def config_for(arch: str):
        return load_config(args.config, [*args.sets, f"prior.arch={arch}", f"sample.n={args.n}"])

    def timed(step) -> None:  # the training steps' seconds go into the table
        seconds = run_step(step)
        if seconds is not None:
            timings[step.name] = seconds

    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    cfg = config_for(archs[0])
    paths = RunPaths(cfg.run_dir)
    timings: dict[str, float] = {}
    timed(tokenizer.step(cfg, paths))
    for split in ("train", "test"):
        run_step(tokenize.step(cfg, paths, split))

    rows = []
    for index, arch in enumerate(archs):
        cfg = config_for(arch)
        timed(prior.step(cfg, paths, arch))

        prior_model, provenance = load_prior(paths.prior(arch))
        controls = SampleControls(**cfg.sample.model_dump(include=set(SampleControls.model_fields)))
        labels = torch.arange(64) % prior_model.config.num_classes if prior_model.config.num_classes else None
        with torch.no_grad():
            prior_model.sample(8, None if labels is None else labels[:8], controls,
                               generator=torch.Generator().manual_seed(1))  # warm-up
            tick = time.perf_counter()
            prior_model.sample(64, labels, controls, generator=torch.Generator().manual_seed(1))
            seconds_64 = time.perf_counter() - tick

        run_step(sample.step(cfg, paths, arch))
        # rFID once (it depends on the tokenizer only), with the first prior's report
        report_dir = paths.arch_report(arch)
        run_step(fid.step(cfg, paths, arch, out=report_dir, with_rfid=index == 0))
        metrics = read_json(report_dir / METRICS_FILE)
        generation = metrics["generation"]
        row = {"arch": arch, "test_bits_per_code": provenance.get("test_bits_per_code"),
               "fid": generation["fid"], "kid": generation.get("kid_mean"),
               "precision": generation.get("precision"), "recall": generation.get("recall"),
               "samples": metrics["protocol"]["generated_count"], "reference": metrics["protocol"]["reference"],
               "seconds_per_64": round(seconds_64, 2), "sample_seconds_total": metrics["sampling"].get("seconds"),
               "train_seconds": timings.get(f"prior {arch}")}
        if "reconstruction" in metrics:
            row["rfid"] = metrics["reconstruction"]["rfid"]
            row["psnr"] = metrics["reconstruction"]["psnr"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    threads = torch.get_num_threads()
    write_json(paths.root / "prior_table.json", {"config": [str(c) for c in args.config], "sets": args.sets,
                                                 "n": args.n, "torch": torch.__version__, "threads": threads,
                                                 "timings": timings, "rows": rows})
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [f"{rows[0]['reference']} reference, {args.n} samples per prior, {threads} CPU threads", "",
             "| prior | NLL (bits/code) | FID | KID | precision | recall | s / 64 samples | train s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {fmt(r['test_bits_per_code'], '.3f')} | {fmt(r['fid'], '.2f')} | "
              f"{fmt(r['kid'], '.4f')} | {fmt(r['precision'], '.3f')} | {fmt(r['recall'], '.3f')} | "
              f"{r['seconds_per_64']} | {fmt(r['train_seconds'], '')} |" for r in rows]
    write_text(paths.root / "prior_table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
