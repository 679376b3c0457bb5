"""How vqgen measures FID, in words and names: one source for the reports (``pipeline.fid``) and the model cards
that the two stages write, which may not import ``pipeline.fid``."""

from __future__ import annotations

FEATURE_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's name for the 2015-12-05 TF Inception graph
# Part of every cache key of fast features: change it whenever export, calibration or quantization change.
FAST_RECIPE = "int8-v1"

PROTOCOL = (f"FID, KID (polynomial kernel, 100 subsets) and precision/recall (k=3) are torch-fidelity's own functions "
            f"on 2048-d pool3 features of its `{FEATURE_EXTRACTOR}` Inception. Images go in as uint8 RGB at their "
            f"native resolution (grayscale repeated to 3 channels) and are resized to 299 px inside the extractor "
            f"with the TF-1 bilinear rule. The reference is a dataset split (by default the test split); rFID "
            f"compares tokenizer reconstructions of the reference images with the same reference. FID depends on "
            f"the sample count: compare only numbers computed with the same counts.")


def feature_path_label(feature_path: str) -> str:
    """What a report prints about the feature path, so fast-path FIDs are never mistaken for exact ones."""
    if feature_path == "exact":
        return "exact: float32, equal to torch-fidelity's features to ~1e-5"
    return (f"fast ({FAST_RECIPE}): int8 Inception in ONNX Runtime, approximate features; FID 2-6% above "
            f"exact on MNIST at 5,000-10,000 images a side")
