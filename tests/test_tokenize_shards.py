"""`vqgen tokenize --devices 2`: two processes (gloo on the CPU) write the same shards as one, in dataset order,
and a prior trains on them. The spawned runs are marked slow: each process imports torch afresh (40-50 s on a
loaded 2-core machine); the fast test writes the ranks' shares in turn in this process."""

from __future__ import annotations

import json

import pytest
import torch

from helpers_reliability import PRIOR_TINY, TOKENIZER_TINY, assert_clear_error, invoke, sets
from pipeline.config import load_config
from pipeline.core.code_dataset import CodeDataset
from pipeline.core.files import sha256_file
from pipeline.core.images import to_float
from pipeline.datasets import load_split
from stage1_tokenizer.tokenizer import Tokenizer

SHARD = 300  # digits: 1497 training images -> 5 shards (both processes write some), 300 test images -> one file


def tiny_tokenizer(directory):
    torch.manual_seed(0)
    config = load_config([], TOKENIZER_TINY)
    tokenizer = Tokenizer(config.tokenizer.architecture().model_copy(update={"image_size": 16}))
    # Untrained, every image would take one code; codes drawn from encoder outputs make the comparisons mean something.
    with torch.no_grad():
        z = tokenizer.network.encoder(to_float(load_split(config.data, "test").images[:64]))
        z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        tokenizer.network.quantizer.codebook.weight.copy_(z[torch.randperm(z.shape[0])[:16]])
    tokenizer.save(directory)
    return directory


@pytest.mark.slow
def test_two_processes_write_the_shards_of_one_and_a_prior_trains_on_them(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")
    common = ["tokenize", "--tokenizer", tokenizer, "--shard-items", SHARD, *sets(TOKENIZER_TINY)]
    code, output = invoke([*common, "--out", tmp_path / "one"])
    assert code == 0, output
    code, output = invoke([*common, "--out", tmp_path / "two", "--devices", 2])
    assert code == 0, output

    train_files = [f"codes-{k:05d}-of-00005.safetensors" for k in range(5)]
    for split, files in (("train", train_files), ("test", ["codes.safetensors"])):
        one, two = tmp_path / "one" / split, tmp_path / "two" / split
        assert sorted(p.name for p in two.iterdir()) == sorted([*files, "meta.json"])
        assert [sha256_file(two / f) for f in files] == [sha256_file(one / f) for f in files]  # bit-identical
        meta_one, meta_two = (json.loads((d / "meta.json").read_text()) for d in (one, two))
        assert meta_two["shards"] == meta_one["shards"]

    codes = CodeDataset(tmp_path / "two" / "train")
    data = load_split(load_config([], TOKENIZER_TINY).data, "train")
    stored, labels = codes.rows(0, len(codes))
    assert len(codes) == 1497 and torch.equal(labels, data.labels)  # dataset order across the shards
    encoded = Tokenizer.load(tokenizer).encode(to_float(data.images[1200:1210]))["codes"]
    assert torch.equal(stored[1200:1210], encoded)
    assert stored.unique().numel() > 1  # not a degenerate comparison

    run = tmp_path / "run"
    code, output = invoke(["prior", "train", "--codes", tmp_path / "two", "--run-dir", run,
                           *sets([*PRIOR_TINY, "prior.train.max_steps=1"])])
    assert code == 0, output
    assert (run / "prior-gpt" / "model.safetensors").exists()


@pytest.mark.slow
def test_an_error_in_a_process_is_one_clear_line(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")
    code, output = invoke(["tokenize", "--tokenizer", tokenizer, "--out", tmp_path / "codes", "--devices", 2,
                           *sets([*TOKENIZER_TINY, "data.image_size=32"])])
    assert_clear_error(code, output, "takes 1x16px images, but digits/train gives 1x32px")
    assert not (tmp_path / "codes" / "train").exists()


def test_shards_written_rank_by_rank_equal_those_of_one_process(tmp_path):
    """The share of each of 3 ranks, written in turn into one folder, makes the files one process writes."""
    from pipeline.core.code_shards import shards_of_rank
    from pipeline.core.code_writer import write_meta
    from stage1_tokenizer.tokenize import split_files, split_meta, tokenize_files

    tokenizer_dir = tiny_tokenizer(tmp_path / "tokenizer")
    code, output = invoke(["tokenize", "--tokenizer", tokenizer_dir, "--out", tmp_path / "one", "--split", "test",
                           "--shard-items", 64, *sets(TOKENIZER_TINY)])
    assert code == 0, output
    tokenizer, data = Tokenizer.load(tokenizer_dir), load_split(load_config([], TOKENIZER_TINY).data, "test")
    shard_items, files = split_files(tokenizer, data, 64)
    folder = tmp_path / "ranks"
    folder.mkdir()
    records = [r for rank in (2, 0, 1) for r in tokenize_files(tokenizer, data, folder, files,
                                                                shards_of_rank(len(files), rank, 3))]
    write_meta(folder, tokenizer.levels(), True, shard_items, sorted(records, key=lambda r: r["file"]),
               split_meta(tokenizer_dir, data))
    one = json.loads((tmp_path / "one" / "test" / "meta.json").read_text())
    assert json.loads((folder / "meta.json").read_text())["shards"] == one["shards"]
    assert len(one["shards"]) == 5 and [s["items"] for s in one["shards"]] == [64, 64, 64, 64, 44]
    assert torch.equal(CodeDataset(folder).rows(0, 300)[0], CodeDataset(tmp_path / "one" / "test").rows(0, 300)[0])
