"""Our FID feature paths against torch-fidelity: the exact path gives its features, the fast path its FID within
tolerance; metrics from features match calculate_metrics; reference caches keep the paths apart; ADM .npz export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import fid
from pipeline.core.errors import VqgenError
from pipeline.fid import build_extractor
from pipeline.fid_features import extract_features
from pipeline.npz_export import write_adm_npz

from conftest import MNIST_ROOT


def images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


def torch_fidelity_features(batch: torch.Tensor, weights) -> torch.Tensor:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    with torch.no_grad():
        return model(batch.expand(-1, 3, -1, -1).contiguous())[0]


def mnist(train: bool, n: int) -> torch.Tensor:
    if not (MNIST_ROOT / "MNIST" / "raw").exists():
        pytest.skip(f"offline MNIST not found at {MNIST_ROOT}")
    from torchvision.datasets import MNIST

    return MNIST(str(MNIST_ROOT), train=train, download=False).data[:n][:, None]


def test_exact_features_equal_torch_fidelity(inception_weights):
    # Grayscale at MNIST's size and RGB at CIFAR's, in batches that do not divide the count.
    for batch in (images(5, 1, 28, 0), images(3, 3, 32, 1)):
        expected = torch_fidelity_features(batch, inception_weights)
        ours = extract_features(batch, build_extractor("exact", inception_weights), batch_size=2)
        scale = expected.abs().max()
        assert ((ours - expected).abs().max() / scale).item() < 1e-5
        assert ((ours - expected).norm() / expected.norm()).item() < 1e-5


def test_metrics_equal_calculate_metrics(inception_weights):
    """Same features, torch-fidelity's own metric functions: the numbers calculate_metrics gives."""
    import torch_fidelity

    generated, reference = images(6, 3, 16, 2), images(6, 3, 16, 3)
    ours = fid.compute_metrics(generated, reference, None, inception_weights)
    theirs = torch_fidelity.calculate_metrics(
        input1=fid_dataset(generated), input2=fid_dataset(reference), cuda=False, fid=True, kid=True, prc=True,
        kid_subset_size=6, feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(inception_weights),
        save_cpu_ram=True, verbose=False)
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)
    assert ours["precision"] == theirs["precision"] and ours["recall"] == theirs["recall"]


def fid_dataset(batch: torch.Tensor):
    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return batch.shape[0]

        def __getitem__(self, index):
            return batch[index]

    return Images()


def test_fast_fid_stays_close_to_exact(inception_weights, tmp_path):
    """48 test vs 48 train MNIST images: measured -1.2% (on 1,000 vs 1,000: -0.16%). With fewer images than feature
    dimensions the covariances are rank-deficient and FID reacts more to int8 noise, hence 2% here."""
    pytest.importorskip("onnxruntime")
    generated, reference = mnist(False, 48), mnist(True, 48)
    exact = fid.compute_metrics(generated, reference, None, inception_weights, cache_dir=str(tmp_path),
                                precision_recall=False)["fid"]
    fast = fid.compute_metrics(generated, reference, None, inception_weights, cache_dir=str(tmp_path),
                               precision_recall=False, feature_path="fast")["fid"]
    assert abs(fast - exact) / exact < 0.02, (fast, exact)


def test_exact_and_fast_reference_features_never_share_a_cache_entry(tmp_path):
    exact = fid.reference_features_path(tmp_path, "vqgen-mnist-test", "exact")
    fast = fid.reference_features_path(tmp_path, "vqgen-mnist-test", "fast")
    assert exact != fast and "exact" in exact.name and "fast" in fast.name
    assert fid.reference_features_path(tmp_path, None, "exact") is None


def test_reference_features_are_cached_and_reused(inception_weights, tmp_path, monkeypatch):
    generated, reference = images(3, 1, 12, 4), images(3, 1, 12, 5)
    first = fid.compute_metrics(generated, reference, "ref", inception_weights, cache_dir=str(tmp_path),
                                precision_recall=False)
    assert fid.reference_features_path(fid.cache_root(str(tmp_path)), "ref", "exact").exists()
    seen = []
    real = fid.extract_features
    monkeypatch.setattr(fid, "extract_features", lambda batch, *a, **k: seen.append(batch.shape[0]) or real(batch, *a, **k))
    again = fid.compute_metrics(generated, reference, "ref", inception_weights, cache_dir=str(tmp_path),
                                precision_recall=False)
    assert seen == [3] and again == first  # only the generated side went through Inception


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(4, 3, 8, 8), "uint8"),
    (torch.zeros(4, 2, 8, 8, dtype=torch.uint8), r"\[N, 1 or 3, H, W\]"),
    (torch.zeros(8, 8, dtype=torch.uint8), r"\[N, 1 or 3, H, W\]"),
])
def test_bad_inputs_fail_before_any_inception_work(bad, message):
    with pytest.raises(VqgenError, match=message):
        fid.compute_metrics(bad, images(4, 3, 8, 0), None, None)


def test_unknown_feature_path_is_a_clear_error():
    with pytest.raises(VqgenError, match="unknown FID feature path 'quick'"):
        fid.compute_metrics(images(4, 3, 8, 0), images(4, 3, 8, 1), None, None, feature_path="quick")


@pytest.mark.parametrize("channels", [1, 3])
def test_adm_npz_round_trip(tmp_path, channels):
    batch = images(5, channels, 9, 6)
    path = write_adm_npz(batch, tmp_path / "samples.npz")
    with np.load(path) as loaded:
        assert list(loaded.keys()) == ["arr_0"]
        array = loaded["arr_0"]
    assert array.dtype == np.uint8 and array.shape == (5, 9, 9, 3)
    expected = batch.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(array, expected)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left no temporary behind


def test_adm_npz_refuses_other_suffixes_and_dtypes(tmp_path):
    with pytest.raises(VqgenError, match="ending in .npz"):
        write_adm_npz(images(2, 3, 4, 0), tmp_path / "samples.npy")
    with pytest.raises(VqgenError, match="uint8 images"):
        write_adm_npz(torch.zeros(2, 3, 4, 4), tmp_path / "samples.npz")
