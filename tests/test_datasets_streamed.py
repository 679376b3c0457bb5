"""Streamed image splits: an image folder read by DataLoader workers and WebDataset tar shards give the images and
labels the in-memory loader gives, training transforms are seeded, bad files follow data.on_bad_image."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import load_config
from pipeline.core.errors import VqgenError
from pipeline.core.images import ImageData
from pipeline.data_modules import ImageDataModule
from pipeline.datasets import load_split
from pipeline.image_transforms import TrainTransforms, item_generator
from pipeline.streamed_images import StreamedFolder
from pipeline.webdataset_source import WebDatasetSplit


def random_image(rng: np.random.Generator, width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[:, :, 0] if channels == 1 else array, mode)


def make_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """Two classes of 12x12 images, one of them 16x12 (not square), one grayscale and one RGBA."""
    rng = np.random.default_rng(seed)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            size, mode = ((16, 12), "RGB") if i == 1 else ((12, 12), ("L" if i == 2 else "RGBA" if i == 3 else "RGB"))
            random_image(rng, *size, mode).save(root / label / f"{i:03d}.png")
    return root


def config(root, *extra: str):
    return load_config([], [f"data.root={root}", *extra]).data


def all_batches(split, batch_size: int = 4, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*split.batches(batch_size, num_workers))
    return torch.cat(images), torch.cat(labels)


@pytest.mark.parametrize("size", [None, 8])
def test_streamed_folder_gives_the_in_memory_images_and_labels(tmp_path, size):
    root = make_folder(tmp_path / "folder", per_class=10)
    extra = [f"data.image_size={size}"] if size else []
    for split in ("train", "test"):
        memory = load_split(config(root, "data.name=imagefolder", "data.stream=false", *extra), split)
        streamed = load_split(config(root, "data.name=imagefolder", "data.stream=true", *extra), split)
        assert isinstance(memory, ImageData) and isinstance(streamed, StreamedFolder)
        assert (streamed.image_size, streamed.channels, streamed.classes) == (memory.image_size, 3, ["cat", "dog"])
        images, labels = all_batches(streamed, num_workers=1 if split == "train" else 0)
        assert torch.equal(images, memory.images) and torch.equal(labels, memory.labels)
        assert torch.equal(streamed.head(3), memory.images[:3])


def test_a_grid_spreads_over_a_class_sorted_split_in_memory_and_takes_the_head_of_a_streamed_one(tmp_path):
    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, like an image folder's test split
    data = ImageData(labels.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).to(torch.uint8).contiguous(), labels,
                     [str(c) for c in range(10)], "digits", "test")
    picked = data.spread(20)
    assert picked[:, 0, 0, 0].tolist() == [c for c in range(10) for _ in range(2)]  # both ends, every class twice
    assert torch.equal(data.spread(5000), data.images)  # more than there are: each image once
    streamed = load_split(config(make_folder(tmp_path / "folder"), "data.name=imagefolder", "data.stream=true"),
                          "test")
    assert torch.equal(streamed.spread(3), streamed.head(3))


def test_a_small_folder_stays_in_memory_under_auto(tmp_path):
    root = make_folder(tmp_path / "folder")
    assert isinstance(load_split(config(root, "data.name=imagefolder"), "train"), ImageData)


def test_a_wide_image_is_centre_cropped_not_squashed(tmp_path):
    (tmp_path / "f" / "a").mkdir(parents=True)
    array = np.zeros((8, 24, 3), np.uint8)
    array[:, 8:16] = 255  # a white middle third: the centre crop is all white, a squash would be a third white
    for i in range(10):
        Image.fromarray(array).save(tmp_path / "f" / "a" / f"{i}.png")
    split = load_split(config(tmp_path / "f", "data.name=imagefolder", "data.stream=true"), "train")
    images, _ = all_batches(split)
    assert split.image_size == 8 and bool((images == 255).all())


def test_training_transforms_are_seeded_and_crop_and_flip(tmp_path):
    image = torch.arange(3 * 10 * 10, dtype=torch.int64).remainder(251).to(torch.uint8).view(3, 10, 10)
    transforms = TrainTransforms(8, crop_scale=1.25, hflip=True)
    assert transforms.read_size == 10 and transforms.active
    outputs = [transforms(image, item_generator(7, epoch, 3)) for epoch in range(12)]
    assert all(out.shape == (3, 8, 8) for out in outputs)
    again = [transforms(image, item_generator(7, epoch, 3)) for epoch in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(outputs, again))  # same (seed, epoch, index): same crop and flip
    windows = {(top, left): image[:, top : top + 8, left : left + 8] for top in range(3) for left in range(3)}
    seen = set()
    for out in outputs:  # each output is one of the 9 windows, flipped or not
        match = [(pos, flipped) for pos, w in windows.items() for flipped, cand in ((False, w), (True, w.flip(-1)))
                 if torch.equal(out, cand)]
        assert len(match) == 1
        seen.add(match[0])
    assert len({pos for pos, _ in seen}) > 1 and {flipped for _, flipped in seen} == {False, True}


def test_the_tokenizer_trains_on_transformed_images_from_both_loaders(tmp_path):
    root = make_folder(tmp_path / "folder", per_class=10)
    batches = {}
    for stream in ("false", "true"):
        module = ImageDataModule(config(root, "data.name=imagefolder", f"data.stream={stream}", "data.image_size=8",
                                        "data.train_crop_scale=1.5", "data.hflip=true"), batch_size=4, seed=3)
        module.setup("fit")
        loader = module.train_dataloader()
        loader.sampler.set_epoch(1)
        first, again = next(iter(loader)), next(iter(loader))
        assert first[0].shape == (4, 3, 8, 8) and torch.equal(first[0], again[0])  # seeded by (seed, epoch, index)
        loader.sampler.set_epoch(2)
        assert not torch.equal(next(iter(loader))[0], first[0])
        batches[stream] = first
    assert torch.equal(batches["false"][1], batches["true"][1])  # the same shuffle order


def test_training_transforms_stay_out_of_old_fingerprints(tmp_path):
    plain = config(tmp_path, "data.name=imagefolder")
    assert "hflip" not in plain.fingerprint_dump() and "stream" not in plain.fingerprint_dump()
    assert config(tmp_path, "data.name=imagefolder", "data.stream=true").fingerprint_dump() == plain.fingerprint_dump()
    assert config(tmp_path, "data.name=imagefolder", "data.hflip=true").fingerprint_dump()["hflip"] is True


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_files_are_skipped_and_counted_or_fatal(tmp_path, workers, capsys):
    root = make_folder(tmp_path / "folder", per_class=10)
    (root / "cat" / "zzz_truncated.png").write_bytes((root / "cat" / "000.png").read_bytes()[:40])
    (root / "dog" / "zzz_text.png").write_text("not an image")
    memory = load_split(config(root, "data.name=imagefolder", "data.stream=false"), "train")
    streamed = load_split(config(root, "data.name=imagefolder", "data.stream=true"), "train")
    images, labels = all_batches(streamed, num_workers=workers)
    assert torch.equal(images, memory.images) and torch.equal(labels, memory.labels)
    assert streamed.skipped == memory.skipped >= 1 and "skipped" in capsys.readouterr().err
    failing = load_split(config(root, "data.name=imagefolder", "data.stream=true", "data.on_bad_image=fail",
                                "data.image_size=12"), "train")
    with pytest.raises(VqgenError, match=r"^cannot read image .*zzz_.*on_bad_image=skip") as err:
        all_batches(failing, num_workers=workers)
    assert "\n" not in str(err.value)  # one line, not the worker's traceback


def test_a_streamed_training_split_replaces_a_bad_file_by_a_readable_one(tmp_path):
    root = make_folder(tmp_path / "folder", per_class=10)
    (root / "cat" / "000.png").write_text("broken")
    module = ImageDataModule(config(root, "data.name=imagefolder", "data.stream=true", "data.image_size=12"),
                             batch_size=100)
    module.setup("fit")
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape[0] == len(module.train)  # no short batch: the bad file's place went to another image


def write_shard(path: Path, samples: list[tuple[str, bytes, int | None]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, data, label in samples:
            for name, payload in ((f"{key}.png", data), (f"{key}.cls", None if label is None else str(label).encode())):
                if payload is None:
                    continue
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def make_shards(root: Path, n_shards: int = 2, per_shard: int = 5) -> dict[str, tuple[np.ndarray, int]]:
    rng, expected = np.random.default_rng(1), {}
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for shard in range(n_shards):
            samples = []
            for i in range(per_shard):
                array = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="PNG")
                key, label = f"{split}{shard}_{i:04d}", (shard * per_shard + i) % 3
                samples.append((key, buffer.getvalue(), label))
                expected[key] = (array, label)
            write_shard(root / split / f"{split}-{shard:04d}.tar", samples)
    return expected


@pytest.mark.parametrize("workers", [0, 2])
def test_webdataset_shards_round_trip(tmp_path, workers):
    expected = make_shards(tmp_path / "shards")
    split = load_split(config(tmp_path / "shards", "data.name=webdataset"), "train")
    assert isinstance(split, WebDatasetSplit)
    assert (len(split), split.image_size, split.channels, split.classes) == (10, 12, 3, ["0", "1", "2"])
    images, labels = all_batches(split, num_workers=workers)
    want = {key: value for key, value in expected.items() if key.startswith("train")}
    got = sorted((img.permute(1, 2, 0).numpy().tobytes(), int(lab)) for img, lab in zip(images, labels))
    assert got == sorted((arr.tobytes(), lab) for arr, lab in want.values())


def test_webdataset_brace_pattern_and_training_view(tmp_path):
    make_shards(tmp_path / "shards")
    pattern = str(tmp_path / "shards" / "{split}" / "{split}-{0000..0001}.tar")
    module = ImageDataModule(config(pattern, "data.name=webdataset", "data.image_size=8", "data.hflip=true"),
                             batch_size=4)
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert sum(b[0].shape[0] for b in batches) == 10 and batches[0][0].shape[1:] == (3, 8, 8)
    assert module.preview(3).shape == (3, 3, 8, 8)


def test_webdataset_bad_images_follow_on_bad_image(tmp_path, capsys):
    make_shards(tmp_path / "shards")
    write_shard(tmp_path / "shards" / "test" / "test-9999.tar", [("broken", b"not a png", 1)])
    skipping = load_split(config(tmp_path / "shards", "data.name=webdataset"), "test")
    images, _ = all_batches(skipping)
    assert images.shape[0] == 10 and skipping.skipped == 1 and "skipped 1" in capsys.readouterr().err
    failing = load_split(config(tmp_path / "shards", "data.name=webdataset", "data.on_bad_image=fail"), "test")
    with pytest.raises(VqgenError, match="cannot read image .*broken"):
        all_batches(failing)


@pytest.mark.parametrize("name,root,message", [
    ("imagefolder", "empty", "no class sub-folders"),
    ("imagefolder", "no-images", "class folders but no images"),
    ("webdataset", "empty", "no train/ folder"),
    ("webdataset", "no-shards", "holds no .tar shards"),
    ("webdataset", "{split}-{0..3}.tar", "missing shard"),
    ("webdataset", None, "needs a root"),
])
def test_empty_folders_and_wrong_patterns_are_clear_errors(tmp_path, name, root, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no-images" / "a").mkdir(parents=True)
    (tmp_path / "no-shards" / "train").mkdir(parents=True)
    extra = [f"data.root={tmp_path / root}"] if root else []
    data = load_config([], [f"data.name={name}", "data.stream=true", *extra]).data
    with pytest.raises(VqgenError, match=message):
        load_split(data, "train")


def test_stream_true_is_refused_for_a_built_in_dataset():
    with pytest.raises(VqgenError, match="held in memory"):
        load_split(load_config([], ["data.stream=true"]).data, "train")


def test_tokenize_and_fid_read_a_streamed_split_like_the_in_memory_one(tmp_path):
    from pipeline.image_sources import image_batches, load_images
    from stage1_tokenizer import Tokenizer, TokenizerConfig
    from stage1_tokenizer.tokenize import encode_images

    root = make_folder(tmp_path / "folder", per_class=10)
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8, image_size=8,
                                          in_channels=3, quantizer={"name": "vq", "codebook_size": 16})).network.eval()
    results = {}
    for stream in ("false", "true"):
        data = config(root, "data.name=imagefolder", f"data.stream={stream}", "data.image_size=8")
        codes, labels = encode_images(tokenizer, load_split(data, "train"), batch_size=5, with_labels=True)
        source = load_images("train", data, 7, "abc")
        results[stream] = (codes, labels, torch.cat(list(image_batches(source.images, 3))), source.cache_name)
    memory, streamed = results["false"], results["true"]
    assert all(torch.equal(memory[0][k], streamed[0][k]) for k in memory[0]) and torch.equal(memory[1], streamed[1])
    assert torch.equal(memory[2], streamed[2]) and memory[2].shape[0] == 7 and memory[3] == streamed[3]


def test_a_streamed_split_tokenizes_into_the_same_shards_as_the_in_memory_one(tmp_path):
    """Shards cut a split into item ranges; a streamed folder reads each range through its workers."""
    from pipeline.core.code_dataset import CodeDataset
    from stage1_tokenizer import Tokenizer, TokenizerConfig
    from stage1_tokenizer.tokenize import tokenize_split

    root = make_folder(tmp_path / "folder", per_class=10)
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(hidden_channels=16, res_channels=8, n_res_blocks=1, embed_dim=8, image_size=8,
                                          in_channels=3, quantizer={"name": "vq", "codebook_size": 16}))
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    read = {}
    for stream in ("false", "true"):
        data = load_split(config(root, "data.name=imagefolder", f"data.stream={stream}", "data.image_size=8"), "train")
        tokenize_split(tokenizer.network, tokenizer_dir, data, tmp_path / stream, batch_size=4, shard_items=7)
        codes = CodeDataset(tmp_path / stream)
        assert len(codes.meta["shards"]) == 3  # 18 images in shards of 7
        read[stream] = codes.rows(0, len(codes))
    assert torch.equal(read["false"][0], read["true"][0]) and torch.equal(read["false"][1], read["true"][1])
