"""The five steps of the chain. Each takes a resolved config and paths, writes its outputs atomically, and
records a fingerprint of its inputs there, so the whole-chain command can tell finished work from stale work."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from stage1_tokenizer.adversarial_module import training_module
from stage1_tokenizer.lightning_module import psnr
from stage1_tokenizer.config import TokenizerLossConfig
from stage1_tokenizer.tokenize import tokenize_split
from stage1_tokenizer.tokenizer import Tokenizer
from stage2_prior.config import SampleControls
from stage2_prior.lightning_module import PriorModule
from stage2_prior.persistence import load_prior, save_prior
from stage2_prior.registry import build_prior

from . import fid as fid_lib
from .config import PipelineConfig
from .core.code_dataset import CODES_FILE, META_FILE, CodeDataset
from .core.errors import VqgenError
from .core.files import WEIGHTS_FILE, atomic_dir, read_json, save_tensors, sha256_file, write_json
from .core.images import save_png, to_float, to_uint8, write_image_grid
from .datasets import load_split
from .image_sources import SPLITS, load_images
from .training import CHECKPOINT_DIR, LOG_DIR, EpochRandomSampler, build_trainer, fit

console = Console(stderr=True)

# Trainer settings that change how long or where training runs, not what a finished model is.
RUN_ONLY_TRAIN_KEYS = {"max_epochs", "max_steps", "devices", "num_nodes", "accelerator", "num_workers",
                       "profiler", "log_every_n_steps", "val_check_interval", "channels_last", "compile"}


class RunPaths:
    """Where each step writes inside a run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tokenizer = self.root / "tokenizer"
        self.report = self.root / "report"

    def codes(self, split: str) -> Path:
        return self.root / "codes" / split

    def prior(self, arch: str) -> Path:
        return self.root / f"prior-{arch}"

    def samples(self, arch: str) -> Path:
        return self.root / f"samples-{arch}"


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _model_section(section) -> dict:
    dump = section.model_dump(mode="json")
    dump["train"] = {k: v for k, v in dump["train"].items() if k not in RUN_ONLY_TRAIN_KEYS}
    if dump.get("loss") == TokenizerLossConfig().model_dump(mode="json"):
        del dump["loss"]  # the plain objective: runs from before the VQGAN terms existed keep their fingerprint
    # A prior's other architectures' sub-sections (gpt:, pixelcnn:, maskgit:) do not shape the model trained.
    for arch in ("gpt", "pixelcnn", "maskgit"):
        if isinstance(dump.get(arch), dict) and dump.get("arch") != arch:
            del dump[arch]
    return dump


# --- fingerprints of each step's inputs --------------------------------------------------------------------------

def tokenizer_fingerprint(cfg: PipelineConfig) -> str:
    return fingerprint("tokenizer", _model_section(cfg.tokenizer), cfg.data.model_dump(mode="json"), cfg.seed)


def codes_fingerprint(cfg: PipelineConfig, tokenizer_dir: Path) -> str:
    return fingerprint("codes", sha256_file(tokenizer_dir / WEIGHTS_FILE), cfg.data.model_dump(mode="json"))


def prior_fingerprint(cfg: PipelineConfig, codes_dir: Path) -> str:
    return fingerprint("prior", _model_section(cfg.prior), sha256_file(codes_dir / CODES_FILE), cfg.seed)


def samples_fingerprint(cfg: PipelineConfig, prior_dir: Path, tokenizer_dir: Path) -> str:
    return fingerprint("samples", sha256_file(prior_dir / WEIGHTS_FILE), sha256_file(tokenizer_dir / WEIGHTS_FILE),
                       cfg.sample.model_dump(mode="json"))


def report_fingerprint(cfg: PipelineConfig, samples_dir: Path, tokenizer_dir: Path) -> str:
    fid = cfg.fid.model_dump(mode="json", exclude={"cache_dir", "batch_size"})
    return fingerprint("report", sha256_file(samples_dir / CODES_FILE), sha256_file(tokenizer_dir / WEIGHTS_FILE),
                       fid, cfg.data.model_dump(mode="json"))


def recorded_fingerprint(path: Path) -> Optional[str]:
    """The fingerprint a finished step left in ``path`` (a JSON file), or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("fingerprint") or data.get("provenance", {}).get("fingerprint")


# --- stage 1 ---------------------------------------------------------------------------------------------------

def _archive_stale_checkpoints(out: Path, expected: str) -> None:
    """Checkpoints left by a run of a different config are moved aside (never deleted) before training anew."""
    ckpt_dir = out / CHECKPOINT_DIR
    marker = ckpt_dir / "fingerprint.json"
    if ckpt_dir.exists():
        if recorded_fingerprint(marker) == expected:
            return
        stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
        while (out / f"{CHECKPOINT_DIR}-stale-{stamp}").exists() or (out / f"{LOG_DIR}-stale-{stamp}").exists():
            n += 1  # two changes within a second: never rename onto an archive that is already there
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        stale = out / f"{CHECKPOINT_DIR}-stale-{stamp}"
        ckpt_dir.rename(stale)
        console.print(f"[yellow]checkpoints in {ckpt_dir} came from another config; moved them to {stale}[/]")
        if (out / LOG_DIR).exists():  # their training logs go with them (a resumed run appends to its logs)
            (out / LOG_DIR).rename(out / f"{LOG_DIR}-stale-{stamp}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": expected})


def _loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int) -> DataLoader:
    # The shuffle order is a function of (seed, epoch), so a resumed run sees the batches an uninterrupted one would.
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochRandomSampler(dataset, seed) if shuffle else None,
                      num_workers=num_workers, drop_last=shuffle and len(dataset) > batch_size,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None,
                      persistent_workers=num_workers > 0)


def _built(kind: str, build):
    """Build a model, turning the checks its constructor makes (sizes, options) into a clear user error."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        raise VqgenError(f"invalid {kind} config: {err}") from err


def train_tokenizer(cfg: PipelineConfig, out: Path) -> Path:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    train_data, test_data = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    arch = cfg.tokenizer.architecture().model_copy(
        update={"in_channels": train_data.channels, "image_size": train_data.image_size})
    if arch.image_size % arch.downsample:
        raise VqgenError(f"image size {arch.image_size} is not divisible by tokenizer.downsample {arch.downsample}; "
                         f"set data.image_size to a multiple of it")
    expected = tokenizer_fingerprint(cfg)
    _archive_stale_checkpoints(out, expected)
    module = _built("tokenizer", lambda: training_module(arch, cfg.tokenizer.train, cfg.tokenizer.loss))
    if cfg.tokenizer.train.compile:
        module.model = torch.compile(module.model)
    trainer = build_trainer(cfg.tokenizer.train, out, manual_optimization=not module.automatic_optimization)
    t = cfg.tokenizer.train
    fit(trainer, module, _loader(train_data, t.batch_size, True, t.num_workers, cfg.seed),
        _loader(test_data, 256, False, 0, cfg.seed), out)
    if trainer.is_global_zero:
        model = module.evaluation_model()
        model = model._orig_mod if hasattr(model, "_orig_mod") else model
        model.save(out, provenance={"fingerprint": expected, "data": cfg.data.model_dump(mode="json"),
                                    "epochs": trainer.current_epoch, "steps": trainer.global_step})
    return out


def tokenize(cfg: PipelineConfig, tokenizer_dir: Path, out_root: Path, splits=("train", "test")) -> None:
    tokenizer = Tokenizer.load(tokenizer_dir)
    expected = codes_fingerprint(cfg, tokenizer_dir)
    for split in splits:
        data = load_split(cfg.data, split)
        if data.image_size != tokenizer.config.image_size or data.channels != tokenizer.config.in_channels:
            raise VqgenError(
                f"the tokenizer in {tokenizer_dir} takes {tokenizer.config.in_channels}x{tokenizer.config.image_size}"
                f"px images, but {cfg.data.name}/{split} gives {data.channels}x{data.image_size}px; "
                f"set data.image_size/data.channels to match")
        tokenize_split(tokenizer, tokenizer_dir, data, out_root / split, extra_meta={"fingerprint": expected})
        console.print(f"tokenized {len(data)} {split} images -> {out_root / split}")


# --- stage 2 ---------------------------------------------------------------------------------------------------

def train_prior(cfg: PipelineConfig, codes_root: Path, out: Path) -> Path:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    level = cfg.prior.level
    train_codes = CodeDataset(codes_root / "train", level, all_levels=True)
    test_dir = codes_root / "test"
    test_codes = CodeDataset(test_dir, level, all_levels=True) if (test_dir / META_FILE).exists() else None
    if test_codes is not None:
        check_same_codes(train_codes, test_codes)
    arch = cfg.prior.architecture()
    conditional = arch.class_conditional if arch.class_conditional is not None else train_codes.num_classes > 0
    if conditional and train_codes.num_classes == 0:
        raise VqgenError(f"prior.class_conditional is true but {codes_root / 'train'} has no labels")
    filled = {"grid": train_codes.grid, "codebook_sizes": train_codes.codebook_sizes,
              "num_classes": train_codes.num_classes if conditional else 0, "level": train_codes.level}
    for key in ("grid", "codebook_sizes"):
        given = getattr(arch, key)
        if given is not None and list(given) != list(filled[key]):
            raise VqgenError(f"prior.{key} is {given} in the config, but the code dataset {codes_root / 'train'} "
                             f"has {filled[key]}; remove prior.{key} or tokenize with a matching tokenizer")
    arch = arch.model_copy(update=filled)
    expected = prior_fingerprint(cfg, codes_root / "train")
    _archive_stale_checkpoints(out, expected)
    if train_codes.stacked:
        prior = _built("prior", lambda: _hierarchical_prior(arch, train_codes))
    else:
        prior = _built("prior", lambda: build_prior(arch))
    module = PriorModule(prior, cfg.prior.train)
    trainer = build_trainer(cfg.prior.train, out, has_validation=test_codes is not None)
    t = cfg.prior.train
    fit(trainer, module, _loader(train_codes, t.batch_size, True, t.num_workers, cfg.seed),
        _loader(test_codes, 256, False, 0, cfg.seed) if test_codes else None, out)
    if trainer.is_global_zero:
        nll = evaluate_prior_nll(prior, test_codes) if test_codes else None
        save_prior(prior, out, {
            "tokenizer_sha256": train_codes.meta["tokenizer"]["weights_sha256"],
            "codes": {"dir": str(codes_root), "level": "*" if train_codes.stacked else train_codes.level,
                      "grid": train_codes.grid, "codebook_sizes": train_codes.codebook_sizes},
            "test_bits_per_code": nll,
            "provenance": {"fingerprint": expected, "epochs": trainer.current_epoch, "steps": trainer.global_step},
        })
    return out


def _hierarchical_prior(arch, codes: CodeDataset):
    """VQ-VAE-2 codes: one prior per level, coarse to fine, each finer level conditioned on the one above."""
    from stage2_prior.hierarchical import HierarchicalPrior

    if arch.arch != "gpt":
        raise VqgenError(f"{codes.directory} has several code levels ({', '.join(codes.levels)}); stacked priors "
                         f"are built with prior.arch=gpt, or choose one level with prior.level")
    configs, above = {}, None
    for name, spec in codes.levels.items():
        context = ({"context_level": above, "context_grid": codes.levels[above]["grid"],
                    "context_codebook_sizes": codes.levels[above]["codebook_sizes"]} if above else {})
        configs[name] = arch.model_copy(update={"level": name, "grid": spec["grid"],
                                                "codebook_sizes": spec["codebook_sizes"], **context})
        above = name
    return HierarchicalPrior(configs)


def check_same_codes(train: CodeDataset, test: CodeDataset) -> None:
    """A prior trains on one split and is measured on the other: both must come from the same tokenizer."""
    a, b = train.meta["tokenizer"]["weights_sha256"], test.meta["tokenizer"]["weights_sha256"]
    if a != b:
        raise VqgenError(f"{train.directory} was made by the tokenizer with weights sha256 {a}, but {test.directory} "
                         f"by one with {b}; tokenize both splits with the same tokenizer")
    for key in ("grid", "codebook_sizes"):
        if getattr(train, key) != getattr(test, key):
            raise VqgenError(f"{train.directory} has {key} {getattr(train, key)}, but {test.directory} has "
                             f"{getattr(test, key)}; tokenize both splits with the same tokenizer")
    classes = [d.meta.get("dataset", {}).get("classes") for d in (train, test)]
    if train.num_classes and test.num_classes and classes[0] != classes[1]:
        raise VqgenError(f"{train.directory} and {test.directory} name different classes "
                         f"({classes[0][:5]}... vs {classes[1][:5]}...); the labels would not mean the same")


@torch.no_grad()
def evaluate_prior_nll(prior, codes: CodeDataset, batch_size: int = 256) -> float:
    """Mean NLL in bits per code over a code dataset (labels used when the prior is conditional)."""
    prior.eval()
    total, count = 0.0, 0
    for start in range(0, len(codes), batch_size):
        batch, labels = codes.rows(start, start + batch_size)
        size = labels.shape[0]
        total += prior.loss(batch, labels if prior.config.num_classes else None).item() * size
        count += size
    return total / count / np.log(2)


def check_prior_fits_tokenizer(provenance: dict, tokenizer_dir: Path, prior_dir: Path) -> None:
    actual = sha256_file(tokenizer_dir / WEIGHTS_FILE)
    expected = provenance.get("tokenizer_sha256")
    if expected != actual:
        raise VqgenError(f"the prior in {prior_dir} was trained on codes of the tokenizer with weights sha256 "
                         f"{expected}, but {tokenizer_dir} holds {actual}; sample with the tokenizer it was "
                         f"trained on, or retrain the prior")


def sample(cfg: PipelineConfig, prior_dir: Path, tokenizer_dir: Path, out: Path,
           fingerprint_value: Optional[str] = None, npz: Optional[Path] = None) -> Path:
    """Sample, decode and write ``out`` (grid.png, png/, codes); with ``npz``, also an ADM-evaluator .npz there."""
    if npz is not None and Path(npz).suffix != ".npz":  # before minutes of sampling, not after
        raise VqgenError(f"--npz wants a file name ending in .npz, got {npz}")
    prior, provenance = load_prior(prior_dir)
    check_prior_fits_tokenizer(provenance, tokenizer_dir, prior_dir)
    tokenizer = Tokenizer.load(tokenizer_dir)
    s = cfg.sample
    n_classes = prior.config.num_classes
    if n_classes and s.label is not None:
        if s.label == "all":
            labels = torch.arange(s.n) % n_classes
        elif not 0 <= s.label < n_classes:
            raise VqgenError(f"--label {s.label} is outside the prior's {n_classes} classes (0..{n_classes - 1})")
        else:
            labels = torch.full((s.n,), s.label)
    else:
        labels = None
    generator = torch.Generator().manual_seed(s.seed)
    controls = SampleControls(**s.model_dump(include=set(SampleControls.model_fields)))
    all_codes, images = [], []
    level = provenance["codes"]["level"]
    started = time.perf_counter()
    from rich.progress import Progress
    with Progress(transient=True, console=console) as progress:
        task = progress.add_task(f"sampling {s.n} images", total=s.n)
        for start in range(0, s.n, s.batch_size):
            batch_labels = labels[start : start + s.batch_size] if labels is not None else None
            count = min(s.batch_size, s.n - start)
            codes = prior.sample(count, batch_labels, controls, generator=generator)
            codes = codes if isinstance(codes, dict) else {level: codes}  # stacked priors give every level
            all_codes.append(codes)
            images.append(to_uint8(tokenizer.decode(codes)))
            progress.advance(task, count)
    seconds = time.perf_counter() - started
    codes = {name: torch.cat([part[name] for part in all_codes]) for name in all_codes[0]}
    images = torch.cat(images)
    with atomic_dir(out) as tmp:
        write_image_grid(images[:64], tmp / "grid.png")
        (tmp / "png").mkdir()
        for index, image in enumerate(images):
            save_png(image, tmp / "png" / f"{index:05d}.png")
        tensors = {name: level_codes.to(torch.int32) for name, level_codes in codes.items()}
        if labels is not None:
            tensors["labels"] = labels
        save_tensors(tmp / CODES_FILE, tensors)
        write_json(tmp / META_FILE, {
            "n": s.n, "prior": str(prior_dir), "tokenizer": str(tokenizer_dir),
            "tokenizer_sha256": provenance.get("tokenizer_sha256"), "arch": prior.config.arch,
            "controls": controls.model_dump(), "label": s.label, "seed": s.seed,
            "seconds": round(seconds, 3), "fingerprint": fingerprint_value,
            "codes_sha256": sha256_file(tmp / CODES_FILE),
        })
    console.print(f"sampled {s.n} images in {seconds:.1f}s -> {out}")
    if npz is not None:
        from .npz_export import write_adm_npz

        console.print(f"ADM-evaluator npz ({s.n} images) -> {write_adm_npz(images, npz)}")
    return out


# --- evaluation ------------------------------------------------------------------------------------------------

def fid_report(cfg: PipelineConfig, samples_dir: Path | str, tokenizer_dir: Optional[Path], out: Path,
               fingerprint_value: Optional[str] = None) -> dict:
    from .report import write_report

    f = cfg.fid
    weights = fid_lib.resolve_weights(f.inception_weights)
    fid_lib.check_weights_available(weights)
    weights_info = fid_lib.weights_label(weights)
    reference = load_images(f.reference or f.reference_split, cfg.data, f.max_reference, weights_info["sha256"])
    ref_images, cache_name = reference.images, reference.cache_name
    # A split on the generated side (a real-vs-real baseline) takes as many images as the reference.
    generated = load_images(samples_dir, cfg.data, f.max_reference if str(samples_dir) in SPLITS else None,
                            weights_info["sha256"])
    samples = generated.images
    console.print(f"FID: {generated.description} vs {reference.description}")
    metrics: dict[str, Any] = {"generation": fid_lib.compute_metrics(samples, ref_images, cache_name, weights,
                                                                     f.cache_dir, f.batch_size,
                                                                     feature_path=f.feature_path)}
    n_recon = 0
    if tokenizer_dir is not None and reference.split is None:
        console.print("rFID skipped: the reference is a folder of images, not real data the tokenizer can encode")
    elif tokenizer_dir is not None:
        tokenizer = Tokenizer.load(tokenizer_dir)
        n_recon = min(f.n_reconstructions or ref_images.shape[0], ref_images.shape[0])
        originals = ref_images[:n_recon]
        recon = torch.cat([tokenizer.reconstruct(to_float(chunk)) for chunk in originals.split(256)])
        console.print(f"rFID: {n_recon} reconstructions vs the same reference")
        metrics["reconstruction"] = {
            "rfid": fid_lib.compute_metrics(to_uint8(recon), ref_images, cache_name, weights, f.cache_dir,
                                            f.batch_size, precision_recall=False,
                                            feature_path=f.feature_path)["fid"],
            "psnr": float(psnr(recon, to_float(originals)).mean()),
            "mse": float((recon.clamp(-1, 1) - to_float(originals)).pow(2).mean()),
        }
    # A samples directory (png/ inside) has its grid and sampling settings beside the images; a plain folder has not.
    samples_home = generated.folder.parent if generated.folder is not None and generated.folder.name == "png" else None
    sample_meta = read_json(samples_home / META_FILE) if samples_home and (samples_home / META_FILE).exists() else {}
    protocol = {
        "feature_extractor": f"torch-fidelity {fid_lib.FEATURE_EXTRACTOR}, 2048-d pool3",
        "feature_path": fid_lib.feature_path_label(f.feature_path),
        "weights": weights_info,
        "resize": f"native {samples.shape[-1]}px (generated) and {ref_images.shape[-1]}px (reference) uint8 -> "
                  f"299px inside the extractor (TF-1 bilinear); grayscale repeated to RGB",
        "generated": generated.description,
        "generated_count": int(samples.shape[0]),
        "reference": reference.description,
        "reconstruction_count": n_recon,
        "kid": f"polynomial kernel, 100 subsets of {min(1000, samples.shape[0], ref_images.shape[0])}",
        "precision_recall": "k=3 neighbourhoods on the same features",
    }
    result = {"fingerprint": fingerprint_value, "samples": str(samples_dir),
              "tokenizer": str(tokenizer_dir) if n_recon else None,
              "sampling": sample_meta, "protocol": protocol, **metrics}
    write_report(out, result, samples_home / "grid.png" if samples_home else None)
    return result
