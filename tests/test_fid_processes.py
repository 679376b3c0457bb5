"""`vqgen fid --devices N`: the images cut into batch-aligned slices, one per process, give the features of one
process bit for bit; the options fail early and clearly."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_reliability import assert_clear_error, invoke
from pipeline import process_pool
from pipeline.config import load_config
from pipeline.core.errors import VqgenError
from pipeline.datasets import load_split
from pipeline.fid_features import FEATURE_DIM, extract_features
from pipeline.fid_processes import batch_aligned_slices, extract_on_processes
from pipeline.image_sources import StreamedImageSet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StandInExtractor:
    """Cheap features in place of the Inception: a fixed projection of each image, plus its position in its batch,
    so a slice that did not start on a batch edge would give different features."""

    def __init__(self, device: str = "cpu"):
        self.projection = torch.randn(3 * 12 * 12, FEATURE_DIM, generator=torch.Generator().manual_seed(0))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        features = batch.float().flatten(1) @ self.projection
        features[:, 0] = torch.arange(batch.shape[0], dtype=torch.float32)
        return features


def in_process_spawn(worker, args, nprocs, join=True):
    """mp.spawn's contract, run rank by rank in this process: the slicing and gathering without the start-up."""
    for rank in range(nprocs):
        worker(rank, *args)


def images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_slices_are_whole_batches_in_order():
    assert batch_aligned_slices(10, 3, 2) == [(0, 6), (6, 10)]  # 4 batches: 2 and 2, the last one short
    assert batch_aligned_slices(10, 3, 3) == [(0, 3), (3, 6), (6, 10)]
    assert batch_aligned_slices(5, 4, 8) == [(0, 4), (4, 5)]  # no process without a batch
    assert batch_aligned_slices(7, 64, 4) == [(0, 7)]


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_give_the_features_of_one(monkeypatch, processes):
    monkeypatch.setattr(process_pool.mp, "spawn", in_process_spawn)
    batch = images(11)
    one = extract_features(batch, StandInExtractor(), batch_size=3)
    several = extract_on_processes(batch, StandInExtractor, 3, "features", processes)
    assert torch.equal(one, several)


def streamed_folder(root, n: int) -> StreamedImageSet:
    rng = np.random.default_rng(0)
    (root / "a").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / "a" / f"{i:03d}.png")
    split = load_split(load_config([], [f"data.root={root}", "data.name=imagefolder", "data.stream=true"]).data,
                       "train")
    split.workers = 0  # read in the test's process: no DataLoader workers to start
    return StreamedImageSet(split, limit=len(split) - 1)  # a limit, to check the last slice stops at it


def test_a_streamed_set_gives_the_features_of_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(process_pool.mp, "spawn", in_process_spawn)
    streamed = streamed_folder(tmp_path / "f", 12)
    one = extract_features(streamed, StandInExtractor(), batch_size=4)
    assert one.shape[0] == len(streamed)
    assert torch.equal(one, extract_on_processes(streamed, StandInExtractor, 4, "features", 2))


def test_exact_inception_features_from_two_processes_equal_one(monkeypatch, inception_weights):
    from pipeline.fid import build_extractor

    monkeypatch.setattr(process_pool.mp, "spawn", in_process_spawn)
    batch = images(5)
    one = extract_features(batch, build_extractor("exact", inception_weights, device="cpu"), batch_size=2)
    two = extract_on_processes(batch, partial(build_extractor, "exact", inception_weights, None, None), 2,
                               "features", 2)
    assert torch.equal(one, two)


def test_a_process_error_is_one_line(monkeypatch):
    def failing_spawn(worker, args, nprocs, join=True):
        raise process_pool.mp.ProcessRaisedException(
            "\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in f\npipeline.core.errors.VqgenError: Inception weights file x does not exist',
            1, 0)

    monkeypatch.setattr(process_pool.mp, "spawn", failing_spawn)
    with pytest.raises(VqgenError, match="^Inception weights file x does not exist$"):
        extract_on_processes(images(4), StandInExtractor, 2, "features", 2)


@pytest.mark.slow
def test_two_spawned_processes_give_the_features_of_one():
    batch = images(11)
    assert torch.equal(extract_features(batch, StandInExtractor(), batch_size=3),
                       extract_on_processes(batch, StandInExtractor, 3, "features", 2))


def test_where_features_are_taken_leaves_the_report_fingerprint_alone():
    from pipeline.steps.fid import _protocol

    def of(*extra: str):
        return _protocol(load_config([], list(extra)))

    assert of() == of("fid.devices=2", "fid.accelerator=cuda") != of("fid.fast=true")


def test_bad_device_options_are_clear_errors(tmp_path):
    code, output = invoke(["fid", "--run-dir", tmp_path, "--devices", "0"])
    assert_clear_error(code, output, "fid.devices")
    if torch.cuda.device_count() < 64:
        code, output = invoke(["fid", "--run-dir", tmp_path, "--devices", "64", "--accelerator", "cuda"])
        assert_clear_error(code, output, "fid.devices=64", "needs 64 CUDA devices")
    assert not (tmp_path / "report").exists()
