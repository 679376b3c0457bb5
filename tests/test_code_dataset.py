"""Code datasets: write -> read round trip, storage dtype, validation."""

import pytest
import torch

from pipeline.core.errors import VqgenError
from pipeline.core.code_dataset import CodeDataset, storage_dtype, write_code_dataset


def write(tmp_path, codes, sizes, labels=None):
    levels = {"codes": {"grid": list(codes.shape[1:3]), "codebook_sizes": sizes}}
    meta = {"tokenizer": {"dir": "t", "weights_sha256": "abc"},
            "dataset": {"name": "x", "split": "train", "classes": ["a", "b", "c"]}}
    write_code_dataset(tmp_path / "codes", {"codes": codes}, levels, labels, meta)
    return tmp_path / "codes"


def test_round_trip_with_labels(tmp_path):
    codes = torch.randint(0, 300, (10, 4, 4, 2))
    labels = torch.randint(0, 3, (10,))
    directory = write(tmp_path, codes, [300, 300], labels)
    data = CodeDataset(directory)
    assert torch.equal(data.codes["codes"], codes)
    assert torch.equal(data.labels, labels)
    assert data.grid == [4, 4] and data.codebook_sizes == [300, 300] and data.num_classes == 3
    item, label = data[3]
    assert torch.equal(item, codes[3]) and label == labels[3]


def test_smallest_storage_type():
    assert storage_dtype(256) == torch.uint8
    assert storage_dtype(257) == torch.int16
    assert storage_dtype(32768) == torch.int16
    assert storage_dtype(65536) == torch.int32


def test_codes_outside_the_codebook_are_refused(tmp_path):
    codes = torch.randint(0, 8, (5, 2, 2, 1))
    codes[0, 0, 0, 0] = 9
    directory = write(tmp_path, codes, [16])
    (directory / "meta.json").write_text((directory / "meta.json").read_text().replace("16", "8"))
    with pytest.raises(VqgenError, match="outside its codebook"):
        CodeDataset(directory)


def test_missing_dataset_says_what_to_run(tmp_path):
    with pytest.raises(VqgenError, match="vqgen tokenize"):
        CodeDataset(tmp_path / "nothing")
