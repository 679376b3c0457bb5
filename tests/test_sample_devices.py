"""`vqgen sample --devices N`: the batches are shared among N processes, each batch drawn with a seed of (seed,
batch index) alone, so 1 and 2 processes write the very same samples, in the same layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers_reliability import PRIOR_TINY, TOKENIZER_TINY, assert_clear_error, invoke, sets

TINY = TOKENIZER_TINY + PRIOR_TINY + ["tokenizer.train.max_epochs=1", "prior.train.max_epochs=1",
                                      "sample.batch_size=8"]
N = 20  # batches of 8, 8 and 4: two processes get unequal shares


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(one_torch_thread, tmp_path_factory) -> Path:
    """A tiny tokenizer and class-conditional GPT prior on the digits."""
    run = tmp_path_factory.mktemp("run")
    for args in (["tokenizer", "train"], ["tokenize"], ["prior", "train"]):
        code, output = invoke([*args, "--run-dir", run, *sets(TINY)])
        assert code == 0, output
    return run


def sample(run: Path, out: Path, *extra: str) -> Path:
    code, output = invoke(["sample", "--run-dir", run, "--out", out, "--n", N, *sets(TINY), *extra])
    assert code == 0, output
    return out


def same_samples(a: Path, b: Path) -> None:
    codes_a, codes_b = load_file(str(a / "codes.safetensors")), load_file(str(b / "codes.safetensors"))
    assert codes_a.keys() == codes_b.keys()
    for key in codes_a:
        assert torch.equal(codes_a[key], codes_b[key]), key
    pngs_a, pngs_b = sorted((a / "png").iterdir()), sorted((b / "png").iterdir())
    assert [p.name for p in pngs_a] == [p.name for p in pngs_b] and len(pngs_a) == N
    assert all(pa.read_bytes() == pb.read_bytes() for pa, pb in zip(pngs_a, pngs_b))
    assert (a / "grid.png").read_bytes() == (b / "grid.png").read_bytes()


def in_process_spawn(worker, args, nprocs, join=True):
    """mp.spawn's contract, run rank by rank in this process: the sharing and gathering without the start-up."""
    for rank in range(nprocs):
        worker(rank, *args)


def test_two_processes_give_the_samples_of_one(run, tmp_path, monkeypatch):
    from pipeline import process_pool

    one = sample(run, tmp_path / "one")
    monkeypatch.setattr(process_pool.mp, "spawn", in_process_spawn)
    two = sample(run, tmp_path / "two", "--devices", "2")
    same_samples(one, two)
    # Different seeds per batch: the batches are not copies of one another.
    codes = next(iter(load_file(str(one / "codes.safetensors")).values()))
    assert not torch.equal(codes[:4], codes[8:12])


@pytest.mark.slow
def test_two_spawned_processes_give_the_samples_of_one(run, tmp_path):
    same_samples(sample(run, tmp_path / "one"), sample(run, tmp_path / "two", "--devices", "2"))


def test_where_samples_are_drawn_leaves_the_fingerprint_alone(run):
    from pipeline.config import load_config
    from pipeline.steps.sample import fingerprint

    def of(*extra: str) -> str:
        return fingerprint(load_config([], [*TINY, *extra]), run / "prior-gpt", run / "tokenizer")

    assert of() == of("sample.devices=2") != of("sample.seed=1")


def test_bad_device_options_are_clear_errors(run, tmp_path):
    code, output = invoke(["sample", "--run-dir", run, "--out", tmp_path / "s", *sets(TINY), "--devices", "0"])
    assert_clear_error(code, output, "sample.devices")
    if torch.cuda.device_count() < 64:
        code, output = invoke(["sample", "--run-dir", run, "--out", tmp_path / "s", *sets(TINY), "--devices", "64",
                               "--accelerator", "cuda"])
        assert_clear_error(code, output, "sample.devices=64", "needs 64 CUDA devices")
    assert not (tmp_path / "s").exists()
