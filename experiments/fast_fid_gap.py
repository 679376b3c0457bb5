"""Where the fast (int8) FID path's gap to the exact path comes from, on the 10,000 MNIST test images.

1. Both paths' features of the test split (the pipeline's cached reference features, computed when missing).
2. FID between random halves of the split on each path: the gap at a small real-vs-real FID, like the
   10,000-train-vs-10,000-test check, without a second feature pass.
3. The int8 error as noise power: trace Cov(fast - exact) / trace Cov(exact). At a small FID, most of the value is
   the estimator's finite-sample bias, which grows with the features' spread, so the gap tracks this ratio.
4. With ``--float-blocks``: int8 models that keep those Inception blocks in float32, built on the path's own 32
   calibration images, and their noise power on ``--held-out`` test images from the 5,001st on (and their speed).

    uv run --group fast-fid python experiments/fast_fid_gap.py --data-root PATH/TO/mnist \\
        --float-blocks Conv2d_1a_3x3 --float-blocks Conv2d_1a_3x3,Conv2d_2a_3x3,Conv2d_2b_3x3,MaxPool_1,Conv2d_3b_1x1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import fid as fid_lib  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.fid_fast import BODY_LAYERS, CALIBRATION_IMAGES, build_int8_model, resize_and_normalize  # noqa: E402
from pipeline.fid_features import as_rgb_uint8, extract_features  # noqa: E402
from pipeline.image_sources import load_images  # noqa: E402
from pipeline.core.files import load_tensors, save_tensors  # noqa: E402


def split_features(images, cache_name, weights, cache_dir, path: str) -> torch.Tensor:
    root = fid_lib.cache_root(cache_dir)
    cached = fid_lib.reference_features_path(root, cache_name, path)
    if cached.exists():
        return load_tensors(cached)["features"]
    features = fid_lib.feature_function(path, weights, root, images, 64)(images, f"Inception ({path}): test")
    save_tensors(cached, {"features": features})
    return features


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(x.double()) for x in (a, b)]
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


def noise_power(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).double().var(0).sum() / exact.double().var(0).sum())


HELD_OUT_START = 5000  # held-out images start here, past the path's 32 calibration images


def float_block_features(calibration: torch.Tensor, images: torch.Tensor, weights,
                         blocks: tuple[str, ...]) -> tuple[torch.Tensor, float]:
    """Features of ``images`` (and images/s) from an int8 model calibrated on ``calibration``, ``blocks`` in float."""
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="vqgen-int8-") as tmp:
        model = Path(tmp) / "model.onnx"
        build_int8_model(weights, as_rgb_uint8(calibration), model, blocks)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        start = time.perf_counter()
        features = extract_features(images, lambda batch: torch.from_numpy(
            session.run(None, {"image": resize_and_normalize(batch).numpy()})[0]), 50, f"int8, {blocks} in float")
        return features, len(features) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--inception-weights", default=None, help="default: $VQGEN_INCEPTION_WEIGHTS")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--halves", type=int, default=3, help="random 5,000/5,000 splits to score")
    parser.add_argument("--float-blocks", action="append", default=[],
                        help=f"comma-separated blocks of {', '.join(BODY_LAYERS)} to keep in float (repeatable)")
    parser.add_argument("--held-out", type=int, default=300, help="test images scored by each --float-blocks model")
    args = parser.parse_args()
    for spec in args.float_blocks:
        unknown = [block for block in spec.split(",") if block not in BODY_LAYERS]
        if unknown:
            parser.error(f"unknown Inception blocks {unknown}; choose from {', '.join(BODY_LAYERS)}")

    cfg = load_config(["configs/experiments/mnist.yaml"], [f"data.root={args.data_root}"])
    weights = fid_lib.resolve_weights(args.inception_weights)
    reference = load_images("test", cfg.data, None, fid_lib.weights_label(weights)["sha256"])
    exact, fast = (split_features(reference.images, reference.cache_name, weights, args.cache_dir, path)
                   for path in ("exact", "fast"))
    generator = torch.Generator().manual_seed(0)
    for trial in range(args.halves):
        order = torch.randperm(len(exact), generator=generator)
        a, b = order[: len(order) // 2], order[len(order) // 2:]
        fid_exact, fid_fast = fid(exact[a], exact[b]), fid(fast[a], fast[b])
        print(f"halves {trial}: FID exact {fid_exact:.4f}, fast {fid_fast:.4f}, "
              f"gap {fid_fast - fid_exact:+.4f} ({(fid_fast / fid_exact - 1) * 100:+.2f}%)")
    print(f"int8 noise power, all {len(exact)} test images: {noise_power(fast, exact) * 100:.2f}%")
    held = slice(HELD_OUT_START, HELD_OUT_START + args.held_out)
    print(f"  on test images {held.start}-{held.stop}: {noise_power(fast[held], exact[held]) * 100:.2f}%")
    for spec in args.float_blocks:
        blocks = tuple(spec.split(","))
        features, speed = float_block_features(reference.images[:CALIBRATION_IMAGES], reference.images[held], weights,
                                               blocks)
        print(f"  {'+'.join(blocks)} in float: {noise_power(features, exact[held]) * 100:.2f}% "
              f"({speed:.1f} images/s on {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
