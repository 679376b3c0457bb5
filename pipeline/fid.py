"""FID, KID and precision/recall with torch-fidelity's Inception and metric functions, under one written-down protocol.

Protocol: images go in as uint8 RGB at their native resolution (grayscale repeated to 3 channels);
torch-fidelity's ``inception-v3-compat`` extractor resizes them to 299x299 with the TF-1 bilinear rule and
takes the 2048-d pool3 features of the 2015-12-05 Inception graph. vqgen extracts those features itself
(:mod:`pipeline.fid_features`, exact or fast) and hands them to torch-fidelity's FID, KID and precision/recall
(k=3) functions; KID uses the polynomial kernel over 100 subsets. Reference features are cached per dataset,
split, size, count, weights file and feature path, and reused.
"""

from __future__ import annotations

import os
import urllib.error
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch

from .core.errors import VqgenError
from .core.fid_protocol import FAST_RECIPE, FEATURE_EXTRACTOR, feature_path_label  # noqa: F401 (re-exported)
from .core.files import load_tensors, save_tensors, sha256_file
from .fid_fast import FastFeatures
from .fid_features import FEATURE_PATHS, ExactFeatures, as_rgb_uint8, extract_features
from .fid_processes import extract_on_processes

WEIGHTS_ENV = "VQGEN_INCEPTION_WEIGHTS"
TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # its own download's file name


def build_extractor(feature_path: str, weights: Optional[Path], cache_dir: Optional[Path] = None,
                    reference: Optional[torch.Tensor] = None, device: Optional[str] = None) -> Callable:
    """The batch function of one feature path: uint8 ``[B, 3, H, W]`` -> float32 ``[B, 2048]``. The fast path
    calibrates its int8 ranges on the first ``reference`` images (a tensor, or a streamed set's ``head``) and runs
    on the CPU; the exact path runs on ``device`` (default: cuda when there is one)."""
    if feature_path == "exact":
        return ExactFeatures(weights, device)
    if feature_path == "fast":
        if reference is None:
            raise VqgenError("the fast FID path needs the reference images to calibrate its int8 model")
        return FastFeatures(weights, cache_dir, calibration_images(reference))
    raise VqgenError(f"unknown FID feature path {feature_path!r}; choose from {', '.join(FEATURE_PATHS)}")


def calibration_images(reference) -> torch.Tensor:
    """The reference images the fast path calibrates on, as a tensor (a streamed set's first ones)."""
    from .fid_fast import CALIBRATION_IMAGES

    return reference if isinstance(reference, torch.Tensor) else as_rgb_uint8(reference.head(CALIBRATION_IMAGES))


def feature_function(feature_path: str, weights: Optional[Path], root: Path, reference, batch_size: int,
                     devices: int = 1, accelerator: str = "cpu") -> Callable[[object, str], torch.Tensor]:
    """``features(images, description)`` for both sides of one FID: in this process with one extractor built on
    first use, or with ``devices`` > 1 in that many processes that each build their own."""
    if devices > 1:
        calibration = calibration_images(reference) if feature_path == "fast" else None
        make_extractor = partial(build_extractor, feature_path, weights, root, calibration)
        if feature_path == "fast":
            make_extractor("cpu")  # builds and caches the int8 model once, here, rather than in every process
        return lambda images, description: extract_on_processes(images, make_extractor, batch_size, description,
                                                                devices, accelerator)
    extractor: list[Callable] = []

    def features(images, description: str) -> torch.Tensor:
        if not extractor:
            extractor.append(build_extractor(feature_path, weights, root, reference))
        return extract_features(images, extractor[0], batch_size, description)

    return features


def resolve_weights(path: Optional[str]) -> Optional[Path]:
    """The Inception weights file: the option, else $VQGEN_INCEPTION_WEIGHTS, else None (torch-fidelity's own)."""
    chosen = path or os.environ.get(WEIGHTS_ENV)
    if not chosen:
        return None
    chosen_path = Path(chosen).expanduser()
    if not chosen_path.is_file():
        raise VqgenError(f"Inception weights file {chosen_path} does not exist (from "
                         f"{'--inception-weights' if path else WEIGHTS_ENV})")
    return chosen_path


def weights_label(weights: Optional[Path]) -> dict[str, str]:
    """What the protocol records about the weights: file name and sha256 (or torch-fidelity's release)."""
    if weights is None:
        return {"file": f"torch-fidelity release {TORCH_FIDELITY_WEIGHTS}", "sha256": "6726825d (release tag)"}
    return {"file": weights.name, "sha256": sha256_file(weights)}


def cache_root(cache_dir: Optional[str]) -> Path:
    root = cache_dir or os.environ.get("VQGEN_CACHE_DIR") or "~/.cache/vqgen"
    return Path(root).expanduser() / "fidelity"


def compute_metrics(
    generated: torch.Tensor,
    reference: torch.Tensor,
    reference_cache_name: Optional[str],
    weights: Optional[Path],
    cache_dir: Optional[str] = None,
    batch_size: int = 64,
    precision_recall: bool = True,
    feature_path: str = "exact",
    devices: int = 1,
    accelerator: str = "cpu",
) -> dict[str, float]:
    """FID, KID (mean, std) and precision/recall between two uint8 image tensors ``[N, 1 or 3, H, W]``.

    ``feature_path`` is ``exact`` (features equal to torch-fidelity's) or ``fast`` (int8, approximate); see
    :mod:`pipeline.fid_features`. The reference features are cached under ``reference_cache_name`` and the path.
    ``devices`` > 1 takes the features in that many processes (:mod:`pipeline.fid_processes`): the same features.
    """
    if feature_path not in FEATURE_PATHS:
        raise VqgenError(f"unknown FID feature path {feature_path!r}; choose from {', '.join(FEATURE_PATHS)}")
    # A streamed split (either side) is read in batches by extract_features, never held whole.
    generated, reference = (as_rgb_uint8(side) if isinstance(side, torch.Tensor) else side
                            for side in (generated, reference))
    if len(generated) < 2 or len(reference) < 2:
        raise VqgenError("FID needs at least 2 images on each side")
    root = cache_root(cache_dir)
    cached = reference_features_path(root, reference_cache_name, feature_path)
    try:
        features = feature_function(feature_path, weights, root, reference, batch_size, devices, accelerator)
        if cached is not None and cached.exists():
            reference_features = load_tensors(cached)["features"]
        else:
            reference_features = features(reference, "Inception: reference")
            if cached is not None:
                save_tensors(cached, {"features": reference_features})
        generated_features = features(generated, "Inception: generated")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise missing_weights_error(err) from None
    except RuntimeError as err:
        if "download" in str(err).lower() or "url" in str(err).lower():
            raise missing_weights_error(err) from None
        raise
    return metrics_from_features(generated_features, reference_features, precision_recall)


def reference_features_path(root: Path, cache_name: Optional[str], feature_path: str) -> Optional[Path]:
    """Exact and fast features never share an entry: the path (and the fast path's recipe version) is in the name."""
    if cache_name is None:
        return None
    tag = feature_path if feature_path == "exact" else f"{feature_path}-{FAST_RECIPE}"
    return root / f"{cache_name}-{FEATURE_EXTRACTOR}-{tag}-features.safetensors"


def metrics_from_features(generated: torch.Tensor, reference: torch.Tensor,
                          precision_recall: bool = True) -> dict[str, float]:
    """torch-fidelity's own metric functions on features (generated first, as its input1)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    fid = fid_statistics_to_metric(fid_features_to_statistics(generated), fid_features_to_statistics(reference),
                                   verbose=False)
    # The same settings calculate_metrics used: 100 subsets of at most 1000, its fixed seed, k=3 neighbourhoods.
    kid = kid_features_to_metric(generated, reference, verbose=False,
                                 kid_subset_size=min(1000, generated.shape[0], reference.shape[0]))
    out = {
        "fid": float(fid["frechet_inception_distance"]),
        "kid_mean": float(kid["kernel_inception_distance_mean"]),
        "kid_std": float(kid["kernel_inception_distance_std"]),
    }
    if precision_recall:
        # save_cpu_ram: row blocks of the distance matrix instead of the whole N x N at once.
        prc = prc_features_to_metric(generated, reference, verbose=False, save_cpu_ram=True)
        out["precision"] = float(prc["precision"])
        out["recall"] = float(prc["recall"])
    return out


def missing_weights_error(err: Exception) -> VqgenError:
    return VqgenError(
        f"could not download the FID Inception weights ({err}). With no network, pass a local weights file "
        f"with --inception-weights PATH, fid.inception_weights, or the {WEIGHTS_ENV} environment variable "
        f"(a torch-fidelity inception-v3-compat state_dict, for example {TORCH_FIDELITY_WEIGHTS})"
    )


def check_weights_available(weights: Optional[Path]) -> None:
    """Fail early (before any Inception work) when no weights file is given and none can be downloaded, or when the
    file holds more than tensors: torch-fidelity loads it with ``weights_only=False``, so vqgen checks it first with
    ``weights_only=True`` (a file that passes holds nothing that unpickling could run)."""
    if weights is not None:
        try:
            torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # pickled objects, or not a torch file at all
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise VqgenError(f"the Inception weights file {weights} is not a plain state_dict of tensors ({first}); "
                             f"vqgen does not unpickle objects from it") from None
        return
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_WEIGHTS
    if cached.exists():
        return check_weights_available(cached)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    try:
        torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False, weights_only=True)
    except Exception as err:  # no network, DNS failure, HTTP error: all mean the same to the user
        raise missing_weights_error(err) from None
