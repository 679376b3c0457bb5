"""Code datasets: write -> read round trip (one file and shards), storage dtype, validation."""

import json
import pickle

import pytest
import torch

from pipeline.core.code_dataset import CodeDataset, storage_dtype, write_code_dataset
from pipeline.core.code_shards import shard_files, shards_of_rank
from pipeline.core.errors import VqgenError
from pipeline.core.files import save_tensors, sha256_file

META = {"tokenizer": {"dir": "t", "weights_sha256": "abc"},
        "dataset": {"name": "x", "split": "train", "classes": ["a", "b", "c"]}}


def write(tmp_path, codes, sizes, labels=None, shard_items=None):
    levels = {"codes": {"grid": list(codes.shape[1:3]), "codebook_sizes": sizes}}
    write_code_dataset(tmp_path / "codes", {"codes": codes}, levels, labels, META, shard_items=shard_items)
    return tmp_path / "codes"


def two_levels(n=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    codes = {"top": torch.randint(0, 300, (n, 2, 2, 1), generator=generator),
             "bottom": torch.randint(0, 16, (n, 4, 4, 2), generator=generator)}
    levels = {"top": {"grid": [2, 2], "codebook_sizes": [300]}, "bottom": {"grid": [4, 4], "codebook_sizes": [16, 16]}}
    return codes, levels, torch.randint(0, 3, (n,), generator=generator)


def test_round_trip_with_labels(tmp_path):
    codes = torch.randint(0, 300, (10, 4, 4, 2))
    labels = torch.randint(0, 3, (10,))
    directory = write(tmp_path, codes, [300, 300], labels)
    assert sorted(p.name for p in directory.iterdir()) == ["codes.safetensors", "meta.json"]
    data = CodeDataset(directory)
    stored, stored_labels = data.rows(0, len(data))
    assert torch.equal(stored, codes) and stored.dtype == torch.long
    assert torch.equal(stored_labels, labels)
    assert data.grid == [4, 4] and data.codebook_sizes == [300, 300] and data.num_classes == 3
    item, label = data[3]
    assert torch.equal(item, codes[3]) and label == labels[3]


def test_sharded_round_trip_keeps_items_labels_levels_and_order(tmp_path):
    codes, levels, labels = two_levels(n=10)
    write_code_dataset(tmp_path / "codes", codes, levels, labels, META, shard_items=4)
    names = sorted(p.name for p in (tmp_path / "codes").iterdir())
    assert names == ["codes-00000-of-00003.safetensors", "codes-00001-of-00003.safetensors",
                     "codes-00002-of-00003.safetensors", "meta.json"]
    meta = json.loads((tmp_path / "codes" / "meta.json").read_text())
    assert [s["items"] for s in meta["shards"]] == [4, 4, 2] and meta["num_items"] == 10
    assert all(s["sha256"] == sha256_file(tmp_path / "codes" / s["file"]) for s in meta["shards"])

    data = CodeDataset(tmp_path / "codes", all_levels=True)
    assert len(data) == 10 and data.stacked and list(data.levels) == ["top", "bottom"]
    for start, stop in [(0, 10), (3, 9), (4, 8), (9, 10), (5, 5)]:  # inside, across and at shard borders
        rows, row_labels = data.rows(start, stop)
        assert torch.equal(rows["top"], codes["top"][start:stop]) and torch.equal(rows["bottom"],
                                                                                   codes["bottom"][start:stop])
        assert torch.equal(row_labels, labels[start:stop])
    bottom = CodeDataset(tmp_path / "codes", level="bottom")
    assert [int(bottom[i][1]) for i in range(10)] == labels.tolist()
    assert all(torch.equal(bottom[i][0], codes["bottom"][i]) for i in range(10))
    assert torch.equal(bottom[-1][0], codes["bottom"][9])
    with pytest.raises(IndexError):
        bottom[10]


def test_sharded_without_labels_gives_minus_one(tmp_path):
    codes = torch.randint(0, 16, (7, 2, 2, 1))
    data = CodeDataset(write(tmp_path, codes, [16], shard_items=3))
    assert data.num_classes == 0 and data.rows(0, 7)[1].tolist() == [-1] * 7
    assert torch.equal(data.rows(2, 7)[0], codes[2:7])


def test_shard_boundaries_do_not_depend_on_the_number_of_processes():
    files = shard_files(10, 4)
    assert files == [("codes-00000-of-00003.safetensors", 0, 4), ("codes-00001-of-00003.safetensors", 4, 8),
                     ("codes-00002-of-00003.safetensors", 8, 10)]
    assert shard_files(4, 4) == [("codes.safetensors", 0, 4)]
    for world in (1, 2, 3, 5):  # every shard written exactly once, whatever the count
        written = sorted(k for rank in range(world) for k in shards_of_rank(3, rank, world))
        assert written == [0, 1, 2]


def test_the_dataset_travels_to_worker_processes_without_its_codes(tmp_path):
    codes = torch.randint(0, 16, (5000, 4, 4, 1))
    data = CodeDataset(write(tmp_path, codes, [16], shard_items=1000))
    data.rows(0, 5000)  # every shard mapped
    copy = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) < 20_000  # the codes are 80 kB
    assert torch.equal(copy.rows(0, 5000)[0], codes)


def test_smallest_storage_type():
    assert storage_dtype(256) == torch.uint8
    assert storage_dtype(257) == torch.int16
    assert storage_dtype(32768) == torch.int16
    assert storage_dtype(65536) == torch.int32


@pytest.mark.parametrize("shard_items", [None, 4])  # one file: scanned; shards: their recorded ranges
def test_codes_outside_the_codebook_are_refused(tmp_path, shard_items):
    codes = torch.randint(0, 8, (9, 2, 2, 1))
    codes[7, 0, 0, 0] = 9
    directory = write(tmp_path, codes, [16], shard_items=shard_items)
    meta = json.loads((directory / "meta.json").read_text())
    meta["levels"][0]["codebook_sizes"] = [8]
    (directory / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(VqgenError, match="outside its codebook"):
        CodeDataset(directory)


def test_the_writer_refuses_codes_outside_the_codebook(tmp_path):
    with pytest.raises(VqgenError, match="outside its codebook sizes"):
        write(tmp_path, torch.full((3, 2, 2, 1), 16), [16], shard_items=2)
    assert not (tmp_path / "codes").exists()


def test_a_missing_shard_is_named(tmp_path):
    directory = write(tmp_path, torch.randint(0, 16, (9, 2, 2, 1)), [16], shard_items=4)
    (directory / "codes-00001-of-00003.safetensors").unlink()
    with pytest.raises(VqgenError, match=r"codes-00001-of-00003.safetensors is missing.*lists 3 code file"):
        CodeDataset(directory)


@pytest.mark.parametrize("damage, needle", [
    ("flipped", "codes-00002-of-00003.safetensors does not match the sha256"),
    ("truncated", "codes-00002-of-00003.safetensors is not a readable safetensors file"),
    ("swapped", "codes-00002-of-00003.safetensors does not match the sha256"),
    ("fewer_items", "has 1 items, but meta.json says 2"),
])
def test_a_damaged_shard_is_refused(tmp_path, damage, needle):
    codes = torch.randint(0, 16, (10, 2, 2, 1))
    directory = write(tmp_path, codes, [16], labels=torch.arange(10) % 3, shard_items=4)
    shard = directory / "codes-00002-of-00003.safetensors"
    data = bytearray(shard.read_bytes())
    if damage == "flipped":
        data[-1] ^= 1
        shard.write_bytes(bytes(data))
    elif damage == "truncated":
        shard.write_bytes(bytes(data[:-3]))
    elif damage == "swapped":  # a well-formed file from another run
        save_tensors(shard, {"codes": ((codes[8:] + 1) % 16).to(torch.uint8), "labels": torch.arange(2)})
    elif damage == "fewer_items":
        save_tensors(shard, {"codes": codes[8:9].to(torch.uint8), "labels": torch.arange(1)})
    with pytest.raises(VqgenError, match=needle):
        CodeDataset(directory)


@pytest.mark.parametrize("edit, needle", [
    (lambda meta: meta["shards"].pop(), "lists 2 shards but names them codes-00000-of-00003"),
    (lambda meta: meta.update(num_items=11), "its shards hold 10 items, but it says 11"),
    (lambda meta: meta["shards"][1].update(file="codes-00001-of-00004.safetensors"), "lists 3 shards but names"),
    (lambda meta: meta.update(format_version=99), "code format version 99"),
])
def test_a_meta_json_that_disagrees_with_its_shards_is_refused(tmp_path, edit, needle):
    directory = write(tmp_path, torch.randint(0, 16, (10, 2, 2, 1)), [16], shard_items=4)
    meta = json.loads((directory / "meta.json").read_text())
    edit(meta)
    (directory / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(VqgenError, match=needle):
        CodeDataset(directory)


def test_a_code_dataset_of_format_1_still_reads(tmp_path):
    """What vqgen wrote before shards: one codes.safetensors and its sha256 in meta.json."""
    codes, labels = torch.randint(0, 16, (6, 2, 2, 1)), torch.arange(6) % 3
    directory = tmp_path / "old"
    save_tensors(directory / "codes.safetensors", {"codes": codes.to(torch.uint8), "labels": labels})
    (directory / "meta.json").write_text(json.dumps({
        "format_version": 1, "num_items": 6, "has_labels": True, **META,
        "levels": [{"name": "codes", "grid": [2, 2], "codebook_sizes": [16], "dtype": "uint8"}],
        "codes_sha256": sha256_file(directory / "codes.safetensors")}))
    data = CodeDataset(directory)
    assert torch.equal(data.rows(0, 6)[0], codes) and torch.equal(data.rows(0, 6)[1], labels)
    data = (directory / "codes.safetensors").read_bytes()
    (directory / "codes.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a flipped bit, always
    with pytest.raises(VqgenError, match="does not match the sha256"):
        CodeDataset(directory)


def test_missing_dataset_says_what_to_run(tmp_path):
    with pytest.raises(VqgenError, match="vqgen tokenize"):
        CodeDataset(tmp_path / "nothing")
