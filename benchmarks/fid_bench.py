"""Section d: FID throughput of our two feature paths (``pipeline.fid.compute_metrics`` exact and fast) against
calling ``torch_fidelity.calculate_metrics`` directly on two folders of PNGs (what a user without vqgen would do).

All three compute the same metrics (FID, KID, precision/recall) with the same Inception weights from two sets of
``n`` random 32x32 RGB images; throughput counts the ``2n`` images that go through Inception. Inception at 299x299
runs at a few images per second on a small CPU, so ``n`` is small (64 per side) and each path runs once, round-robin,
after no warm-up: the one-off model load is part of each. The fast path's int8 model (built once per weights file
and reference, then cached like reference statistics) is built before the timing; its build time is in the note.
Each row also reports how far its FID is from the direct one.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
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
    from pipeline.fid import FEATURE_EXTRACTOR, build_extractor, cache_root, compute_metrics, resolve_weights

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
    fids: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vqgen-bench-fid-") as tmp:
        root = Path(tmp)
        _write_pngs(generated, root / "generated")
        _write_pngs(reference, root / "reference")
        paths = ["exact"]
        build_seconds = None
        try:  # the fast path's one-off int8 build, outside the timing (it is cached like reference statistics)
            start = time.perf_counter()
            build_extractor("fast", weights, cache_root(str(root / "cache")), reference)
            build_seconds = time.perf_counter() - start
            paths.append("fast")
        except VqgenError as err:
            fast_skip = str(err)

        def ours(path: str):
            def call() -> None:
                fids[path] = compute_metrics(generated, reference, None, weights, cache_dir=str(root / "cache"),
                                             feature_path=path)["fid"]
            return call

        def direct() -> None:
            fids["direct"] = torch_fidelity.calculate_metrics(
                input1=str(root / "generated"), input2=str(root / "reference"), cuda=settings.cuda,
                fid=True, kid=True, prc=True, kid_subset_size=n, feature_extractor=FEATURE_EXTRACTOR,
                feature_extractor_weights_path=str(weights), cache=False, verbose=False)["frechet_inception_distance"]

        once = dataclasses.replace(settings, warmup=0)
        seconds = time_round_robin({"direct": direct, **{path: ours(path) for path in paths}}, once, repeats=1)
    direct_rate = 2 * n / median(seconds["direct"])
    rows = []
    for path, target in (("exact", 1.5), ("fast", 3.0)):
        if path not in paths:
            rows.append(skipped(SECTION, f"{case}, fast path", UNIT, fast_skip, "torch_fidelity direct"))
            continue
        rate = 2 * n / median(seconds[path])
        gap = fids[path] - fids["direct"]
        note = (f"{path} path vs torch_fidelity direct on PNG folders; Inception ({FEATURE_EXTRACTOR}, "
                f"{weights.name}) on 2x{n} images, one run each incl. model load; FID+KID+PR both sides; "
                f"FID {fids[path]:.4f} vs direct {fids['direct']:.4f} (difference {gap:+.2e}, "
                f"{100 * gap / fids['direct']:+.3f}%)")
        if path == "fast":
            note += f"; int8 model built beforehand in {build_seconds:.0f}s (one-off, cached)"
        rows.append(Row(SECTION, f"{case}, {path} path", UNIT, rate, direct_rate, "torch_fidelity direct on PNG folders",
                        throughput_gain(rate, direct_rate), target, note,
                        {"seconds": seconds, "fid": fids, "fid_difference": gap, "fast_build_seconds": build_seconds}))
    return rows
