"""Section d: FID feature extraction throughput, our ``pipeline.fid.compute_metrics`` against calling
``torch_fidelity.calculate_metrics`` directly on two folders of PNGs (what a user without vqgen would do).

Both compute the same metrics (FID, KID, precision/recall) with the same Inception weights from two sets of
``n`` random 32x32 RGB images; throughput counts the ``2n`` images that go through Inception. Inception at 299x299
runs at a few images per second on a small CPU, so ``n`` is small (64 per side) and each path runs once, after
no warm-up: the one-off model load is part of both.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from .results import Row, skipped, throughput_gain
from .timing import Settings, median, time_round_robin

SECTION = "d. FID features"
UNIT = "images/s"


def _write_pngs(images: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:05d}.png")


def run(settings: Settings) -> list[Row]:
    from pipeline.core.errors import VqgenError
    from pipeline.fid import FEATURE_EXTRACTOR, compute_metrics, resolve_weights

    n = 4 if settings.quick else 64
    case = f"{n} + {n} images 3x32x32"
    try:
        weights = resolve_weights(settings.inception_weights)
    except VqgenError as err:
        return [skipped(SECTION, case, UNIT, str(err), "torch_fidelity direct")]
    if weights is None:
        return [skipped(SECTION, case, UNIT, "no Inception weights: pass --inception-weights or set "
                        "$VQGEN_INCEPTION_WEIGHTS (the benchmark never downloads)", "torch_fidelity direct")]
    import torch_fidelity

    generator = torch.Generator().manual_seed(0)
    generated = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    reference = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    with tempfile.TemporaryDirectory(prefix="vqgen-bench-fid-") as tmp:
        root = Path(tmp)
        _write_pngs(generated, root / "generated")
        _write_pngs(reference, root / "reference")

        def ours() -> None:
            compute_metrics(generated, reference, None, weights, cache_dir=str(root / "cache"))

        def direct() -> None:
            torch_fidelity.calculate_metrics(
                input1=str(root / "generated"), input2=str(root / "reference"), cuda=settings.cuda,
                fid=True, kid=True, prc=True, kid_subset_size=n, feature_extractor=FEATURE_EXTRACTOR,
                feature_extractor_weights_path=str(weights), cache=False, verbose=False)

        once = dataclasses.replace(settings, warmup=0)
        seconds = time_round_robin({"ours": ours, "direct": direct}, once, repeats=1)
    ours_rate = 2 * n / median(seconds["ours"])
    direct_rate = 2 * n / median(seconds["direct"])
    note = (f"Inception ({FEATURE_EXTRACTOR}, {weights.name}) on 2x{n} images, one run each incl. model load; "
            "FID+KID+PR both sides")
    return [Row(SECTION, case, UNIT, ours_rate, direct_rate, "torch_fidelity direct on PNG folders",
                throughput_gain(ours_rate, direct_rate), None, note, {k: v for k, v in seconds.items()})]
