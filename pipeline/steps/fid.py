"""Step 5: FID, KID, precision and recall of the samples against a reference, and the tokenizer's rFID; written as
report/metrics.json (the figures and the protocol) and report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from rich.console import Console

from stage1_tokenizer.lightning_module import psnr
from stage1_tokenizer.tokenizer import Tokenizer

from .. import fid as fid_lib
from ..config import PipelineConfig
from ..core.code_dataset import CODES_FILE, META_FILE
from ..core.files import WEIGHTS_FILE, read_json, sha256_file
from ..core.images import to_float, to_uint8
from ..image_sources import image_batches, image_size, load_images
from ..option_checks import SPLITS
from ..process_pool import check_cuda_devices
from ..run_paths import GRID_FILE, METRICS_FILE, PNG_DIR, RunPaths
from .fingerprints import digest
from .step import Step

console = Console(stderr=True)


def fingerprint(cfg: PipelineConfig, samples_dir: Path, tokenizer_dir: Path) -> str:
    return digest("report", sha256_file(samples_dir / CODES_FILE), sha256_file(tokenizer_dir / WEIGHTS_FILE),
                  *_protocol(cfg))


def _protocol(cfg: PipelineConfig) -> tuple[dict, dict]:
    """The settings that change a report's figures (not where features are cached, the batch size, nor the
    processes that take them)."""
    return (cfg.fid.model_dump(mode="json", exclude={"cache_dir", "batch_size", "devices", "accelerator"}),
            cfg.data.fingerprint_dump())


def is_complete(out: Path) -> bool:
    return (out / METRICS_FILE).is_file()  # the report writes it last


def _reconstruction_metrics(cfg: PipelineConfig, tokenizer_dir: Path, reference, weights) -> tuple[dict, int]:
    """rFID, PSNR and MSE of the tokenizer's reconstructions of the reference images, and how many there were."""
    f, ref_images = cfg.fid, reference.images
    tokenizer = Tokenizer.load(tokenizer_dir)
    limit = min(f.n_reconstructions or len(ref_images), len(ref_images))
    # Batch by batch, so a streamed reference is never held whole; the sums give the same means.
    recon_parts, psnr_sum, sq_err, values, n_recon = [], 0.0, 0.0, 0, 0
    for chunk in image_batches(ref_images, 256, limit):
        originals, recon = to_float(chunk), tokenizer.reconstruct(to_float(chunk))
        recon_parts.append(to_uint8(recon))
        psnr_sum += float(psnr(recon, originals).sum())
        sq_err += float((recon.clamp(-1, 1) - originals).pow(2).sum())
        values, n_recon = values + originals.numel(), n_recon + chunk.shape[0]
    console.print(f"rFID: {n_recon} reconstructions vs the same reference")
    return {
        "rfid": fid_lib.compute_metrics(torch.cat(recon_parts), ref_images, reference.cache_name, weights,
                                        f.cache_dir, f.batch_size, precision_recall=False,
                                        feature_path=f.feature_path, devices=f.devices,
                                        accelerator=f.accelerator)["fid"],
        "psnr": psnr_sum / n_recon,
        "mse": sq_err / values,
    }, n_recon


def run(cfg: PipelineConfig, samples_dir: Path | str, tokenizer_dir: Optional[Path], out: Path,
        fingerprint_value: Optional[str] = None) -> dict:
    """Score ``samples_dir`` (a samples or run directory, a folder of images, or a split) and write ``out``;
    with ``tokenizer_dir``, the rFID of that tokenizer too."""
    from ..report import write_report

    f = cfg.fid
    check_cuda_devices("fid", f.devices, f.accelerator)
    weights = fid_lib.resolve_weights(f.inception_weights)
    fid_lib.check_weights_available(weights)
    weights_info = fid_lib.weights_label(weights)
    reference = load_images(f.reference or f.reference_split, cfg.data, f.max_reference, weights_info["sha256"])
    ref_images = reference.images
    # A split on the generated side (a real-vs-real baseline) takes as many images as the reference.
    generated = load_images(samples_dir, cfg.data, len(ref_images) if str(samples_dir) in SPLITS else None,
                            weights_info["sha256"])
    samples = generated.images
    console.print(f"FID: {generated.description} vs {reference.description}")
    metrics: dict[str, Any] = {"generation": fid_lib.compute_metrics(samples, ref_images, reference.cache_name,
                                                                     weights, f.cache_dir, f.batch_size,
                                                                     feature_path=f.feature_path,
                                                                     devices=f.devices, accelerator=f.accelerator)}
    # Said at once: an rFID pass can take as long again, and a run stopped in it would otherwise show nothing.
    console.print("  " + ", ".join(f"{name} {value:.4g}" for name, value in metrics["generation"].items()))
    n_recon = 0
    if tokenizer_dir is not None and reference.split is None:
        console.print("rFID skipped: the reference is a folder of images, not real data the tokenizer can encode")
    elif tokenizer_dir is not None:
        metrics["reconstruction"], n_recon = _reconstruction_metrics(cfg, tokenizer_dir, reference, weights)
    # A samples directory (png/ inside) has its grid and sampling settings beside the images; a plain folder has not.
    folder = generated.folder
    samples_home = folder.parent if folder is not None and folder.name == PNG_DIR else None
    sample_meta = read_json(samples_home / META_FILE) if samples_home and (samples_home / META_FILE).exists() else {}
    protocol = {
        "feature_extractor": f"torch-fidelity {fid_lib.FEATURE_EXTRACTOR}, 2048-d pool3",
        "feature_path": fid_lib.feature_path_label(f.feature_path),
        "weights": weights_info,
        "resize": f"native {image_size(samples)}px (generated) and {image_size(ref_images)}px (reference) uint8 -> "
                  f"299px inside the extractor (TF-1 bilinear); grayscale repeated to RGB",
        "generated": generated.description,
        "generated_count": len(samples),
        "reference": reference.description,
        "reconstruction_count": n_recon,
        "kid": f"polynomial kernel, 100 subsets of {min(1000, len(samples), len(ref_images))}",
        "precision_recall": "k=3 neighbourhoods on the same features",
    }
    result = {"fingerprint": fingerprint_value, "samples": str(samples_dir),
              "tokenizer": str(tokenizer_dir) if n_recon else None,
              "sampling": sample_meta, "protocol": protocol, **metrics}
    write_report(out, result, samples_home / GRID_FILE if samples_home else None)
    return result


def step(cfg: PipelineConfig, paths: RunPaths, arch: str, out: Optional[Path] = None,
         with_rfid: bool = True, setting: str = "") -> Step:
    """The report on ``arch``'s samples (the set named ``setting``), in ``out`` (default RUN/report);
    ``with_rfid`` False leaves rFID out."""
    samples_dir, out = paths.samples(arch, setting), out or paths.report
    return Step("fid", out / METRICS_FILE, lambda: fingerprint(cfg, samples_dir, paths.tokenizer),
                lambda: is_complete(out),
                lambda expected: run(cfg, samples_dir, paths.tokenizer if with_rfid else None, out, expected))


def real_step(cfg: PipelineConfig, paths: RunPaths, split: str = "train") -> Step:
    """The floor under every generator's figures, in RUN/report-real: as many real images of ``split`` as the
    reference holds, scored against it, and the rFID of the tokenizer's reconstructions of the reference."""
    out = paths.real_report
    return Step(f"fid {split} vs reference", out / METRICS_FILE,
                lambda: digest("real report", split, sha256_file(paths.tokenizer / WEIGHTS_FILE), *_protocol(cfg)),
                lambda: is_complete(out), lambda expected: run(cfg, split, paths.tokenizer, out, expected))
