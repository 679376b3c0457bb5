"""FID, KID and precision/recall through torch-fidelity, under one written-down protocol.

Protocol: images go in as uint8 RGB at their native resolution (grayscale repeated to 3 channels);
torch-fidelity's ``inception-v3-compat`` extractor resizes them to 299x299 with the TF-1 bilinear rule and
takes the 2048-d pool3 features of the 2015-12-05 Inception graph. FID and precision/recall (k=3) use
those features; KID uses the polynomial kernel over 100 subsets. Reference statistics are cached per
dataset, split, size, count and weights file, and reused.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from .core.errors import VqgenError
from .core.files import sha256_file

WEIGHTS_ENV = "VQGEN_INCEPTION_WEIGHTS"
TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # its own download's file name
FEATURE_EXTRACTOR = "inception-v3-compat"


class UInt8RGB(Dataset):
    """Wraps uint8 images ``[N, C, H, W]`` as torch-fidelity inputs: uint8 ``[3, H, W]`` each."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8:
            raise TypeError("FID inputs must be uint8 images")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image


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
) -> dict[str, float]:
    """FID, KID (mean, std) and precision/recall between two uint8 image tensors."""
    import torch_fidelity

    if generated.shape[0] < 2 or reference.shape[0] < 2:
        raise VqgenError("FID needs at least 2 images on each side")
    kwargs: dict[str, Any] = dict(
        input1=UInt8RGB(generated),
        input2=UInt8RGB(reference),
        cuda=torch.cuda.is_available(),
        batch_size=batch_size,
        fid=True,
        kid=True,
        prc=precision_recall,
        kid_subset_size=min(1000, generated.shape[0], reference.shape[0]),
        feature_extractor=FEATURE_EXTRACTOR,
        feature_layer_fid="2048",
        feature_layer_kid="2048",
        feature_layer_prc="2048",
        cache_root=str(cache_root(cache_dir)),
        cache=reference_cache_name is not None,
        input2_cache_name=reference_cache_name,
        samples_shuffle=False,
        # On CPU its default 4 loader workers fight the extractor for the cores; inputs are in memory anyway.
        save_cpu_ram=not torch.cuda.is_available(),
        verbose=False,
    )
    if weights is not None:
        kwargs["feature_extractor_weights_path"] = str(weights)
    try:
        metrics = torch_fidelity.calculate_metrics(**kwargs)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise missing_weights_error(err) from None
    except RuntimeError as err:
        if "download" in str(err).lower() or "url" in str(err).lower():
            raise missing_weights_error(err) from None
        raise
    out = {
        "fid": float(metrics["frechet_inception_distance"]),
        "kid_mean": float(metrics["kernel_inception_distance_mean"]),
        "kid_std": float(metrics["kernel_inception_distance_std"]),
    }
    if precision_recall:
        out["precision"] = float(metrics["precision"])
        out["recall"] = float(metrics["recall"])
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
