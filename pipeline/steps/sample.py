"""Step 4: sample codes from the prior and decode them with the tokenizer: grid.png, png/, codes + meta.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console

from stage1_tokenizer.tokenizer import Tokenizer
from stage2_prior.persistence import load_prior

from ..config import PipelineConfig, SampleSection
from ..core.code_dataset import CODES_FILE, META_FILE
from ..core.errors import VqgenError
from ..core.files import WEIGHTS_FILE, atomic_dir, load_tensors, read_json, save_tensors, sha256_file, write_json
from ..core.images import save_png, write_image_grid
from ..option_checks import check_npz_name
from ..process_pool import check_cuda_devices, process_device
from ..run_paths import GRID_FILE, PNG_DIR, RunPaths
from .fingerprints import digest
from .sample_batches import batch_sizes, draw_batches
from .sample_processes import draw_on_processes
from .step import Step

console = Console(stderr=True)


def fingerprint(cfg: PipelineConfig, prior_dir: Path, tokenizer_dir: Path) -> str:
    # Where the samples are drawn leaves them alone: a batch's draws depend on (seed, batch index) only.
    return digest("samples", sha256_file(prior_dir / WEIGHTS_FILE), sha256_file(tokenizer_dir / WEIGHTS_FILE),
                  cfg.sample.model_dump(mode="json", exclude={"devices", "accelerator"}))


def is_complete(out: Path) -> bool:
    """Samples count as finished when the grid is there, the codes file loads and every image is there."""
    try:
        meta = read_json(out / META_FILE)
        codes = load_tensors(out / CODES_FILE)
    except VqgenError:
        return False
    n = meta.get("n")
    pngs = list((out / PNG_DIR).glob("*.png")) if (out / PNG_DIR).is_dir() else []
    if meta.get("codes_sha256") not in (None, sha256_file(out / CODES_FILE)):
        return False
    return ((out / GRID_FILE).exists() and len(pngs) == n
            and all(value.shape[0] == n for key, value in codes.items() if key != "labels"))


def check_prior_fits_tokenizer(provenance: dict, tokenizer_dir: Path, prior_dir: Path) -> None:
    actual = sha256_file(tokenizer_dir / WEIGHTS_FILE)
    expected = provenance.get("tokenizer_sha256")
    if expected != actual:
        raise VqgenError(f"the prior in {prior_dir} was trained on codes of the tokenizer with weights sha256 "
                         f"{expected}, but {tokenizer_dir} holds {actual}; sample with the tokenizer it was "
                         f"trained on, or retrain the prior")


def class_labels(s: SampleSection, n_classes: int) -> Optional[torch.Tensor]:
    """The class of each sample, or None for an unconditional prior (or ``label: null``)."""
    if not n_classes or s.label is None:
        return None
    if s.label == "all":
        return torch.arange(s.n) % n_classes
    if not 0 <= s.label < n_classes:
        raise VqgenError(f"--label {s.label} is outside the prior's {n_classes} classes (0..{n_classes - 1})")
    return torch.full((s.n,), s.label)


def run(cfg: PipelineConfig, prior_dir: Path, tokenizer_dir: Path, out: Path,
        fingerprint_value: Optional[str] = None, npz: Optional[Path] = None) -> Path:
    """Sample, decode and write ``out`` (grid.png, png/, codes); with ``npz``, also an ADM-evaluator .npz there."""
    check_npz_name(npz)  # before minutes of sampling, not after
    prior, provenance = load_prior(prior_dir)
    check_prior_fits_tokenizer(provenance, tokenizer_dir, prior_dir)
    s = cfg.sample
    check_cuda_devices("sample", s.devices, s.accelerator)
    labels = class_labels(s, prior.config.num_classes)
    controls = s.controls()
    level = provenance["codes"]["level"]
    started = time.perf_counter()
    if s.devices > 1:
        console.print(f"sampling {s.n} images on {s.devices} {s.accelerator} processes")
        batches = draw_on_processes(prior_dir, tokenizer_dir, s.n, s.batch_size, s.seed, controls, labels, level,
                                    s.devices, s.accelerator)
        device = f"{s.accelerator} x{s.devices}"
    else:
        device = process_device(s.accelerator, 0)
        prior.to(device)
        tokenizer = Tokenizer.load(tokenizer_dir, device)
        from rich.progress import Progress
        with Progress(transient=True, console=console) as progress:
            task = progress.add_task(f"sampling {s.n} images", total=s.n)
            batches = draw_batches(prior, tokenizer, s.n, s.batch_size, s.seed, controls, labels, level,
                                   list(range(len(batch_sizes(s.n, s.batch_size)))),
                                   lambda count: progress.advance(task, count))
    seconds = time.perf_counter() - started
    codes = {name: torch.cat([batch_codes[name] for batch_codes, _ in batches]) for name in batches[0][0]}
    images = torch.cat([batch_images for _, batch_images in batches])
    with atomic_dir(out) as tmp:
        write_image_grid(images[:64], tmp / GRID_FILE)
        (tmp / PNG_DIR).mkdir()
        for index, image in enumerate(images):
            save_png(image, tmp / PNG_DIR / f"{index:05d}.png")
        tensors = {name: level_codes.to(torch.int32) for name, level_codes in codes.items()}
        if labels is not None:
            tensors["labels"] = labels
        save_tensors(tmp / CODES_FILE, tensors)
        write_json(tmp / META_FILE, {
            "n": s.n, "prior": str(prior_dir), "tokenizer": str(tokenizer_dir),
            "tokenizer_sha256": provenance.get("tokenizer_sha256"), "arch": prior.config.arch,
            "controls": controls.model_dump(), "label": s.label, "seed": s.seed,
            "seconds": round(seconds, 3), "device": device,
            "fingerprint": fingerprint_value,
            "codes_sha256": sha256_file(tmp / CODES_FILE),
        })
    console.print(f"sampled {s.n} images in {seconds:.1f}s -> {out}")
    if npz is not None:
        from ..npz_export import write_adm_npz

        console.print(f"ADM-evaluator npz ({s.n} images) -> {write_adm_npz(images, npz)}")
    return out


def step(cfg: PipelineConfig, paths: RunPaths, arch: str, setting: str = "") -> Step:
    """``setting`` names this sample set among several of one prior (``cfg.sample`` holds its controls)."""
    prior_dir, out = paths.prior(arch), paths.samples(arch, setting)
    return Step(f"sample {arch} {setting}" if setting else "sample", out / META_FILE,
                lambda: fingerprint(cfg, prior_dir, paths.tokenizer),
                lambda: is_complete(out), lambda expected: run(cfg, prior_dir, paths.tokenizer, out, expected))
