"""`vqgen fid` between any two image sets: a dataset split, a folder of images, a samples directory or a run."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.datasets import DataConfig
from pipeline.core.errors import VqgenError
from pipeline.image_sources import image_folder, load_images

SHA = "ab" * 32


def write_pngs(folder, images: torch.Tensor) -> None:
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{index:05d}.png")


def random_images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_a_samples_directory_and_a_run_resolve_to_their_png_folder(tmp_path):
    write_pngs(tmp_path / "run" / "samples-gpt" / "png", random_images(3, 0))
    assert image_folder(tmp_path / "run" / "samples-gpt") == tmp_path / "run" / "samples-gpt" / "png"
    assert image_folder(tmp_path / "run") == tmp_path / "run" / "samples-gpt" / "png"
    assert image_folder(tmp_path / "run" / "samples-gpt" / "png") == tmp_path / "run" / "samples-gpt" / "png"

    write_pngs(tmp_path / "run" / "samples-maskgit" / "png", random_images(3, 1))
    with pytest.raises(VqgenError, match="several sample sets .*samples-gpt, samples-maskgit"):
        image_folder(tmp_path / "run")
    with pytest.raises(VqgenError, match="is not a folder"):
        image_folder(tmp_path / "missing")


def test_folder_images_round_trip_and_their_cache_key_follows_the_pixels(tmp_path):
    images = random_images(4, 0)
    write_pngs(tmp_path / "a", images)
    source = load_images(tmp_path / "a", DataConfig(), None, SHA)
    assert torch.equal(source.images, images) and source.split is None
    assert load_images(tmp_path / "a", DataConfig(), 2, SHA).images.shape[0] == 2

    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    write_pngs(tmp_path / "b", changed)
    assert load_images(tmp_path / "b", DataConfig(), None, SHA).cache_name != source.cache_name


def test_a_split_is_named_by_dataset_split_and_count(tmp_path):
    source = load_images("test", DataConfig(name="digits"), 10, SHA)
    assert source.split == "test" and source.images.shape == (10, 1, 32, 32)
    assert source.cache_name == f"vqgen-digits-test-32px-1ch-n10-{SHA[:12]}"


def test_fid_of_a_folder_against_itself_is_zero_and_against_noise_is_not(tmp_path, inception_weights):
    digits = load_images("test", DataConfig(name="digits"), 12, SHA).images
    write_pngs(tmp_path / "digits", digits)
    write_pngs(tmp_path / "noise", random_images(12, 0).repeat_interleave(2, -1).repeat_interleave(2, -2))
    reports = {}
    for name in ("digits", "noise"):
        out = tmp_path / f"report-{name}"
        result = CliRunner().invoke(app, ["fid", "--samples", str(tmp_path / name), "--reference",
                                          str(tmp_path / "digits"), "--tokenizer", "none", "--out", str(out),
                                          "--inception-weights", str(inception_weights)])
        assert result.exit_code == 0, result.output
        reports[name] = json.loads((out / "metrics.json").read_text())
    assert abs(reports["digits"]["generation"]["fid"]) < 1e-2
    assert reports["noise"]["generation"]["fid"] > 50
    protocol = reports["noise"]["protocol"]
    assert protocol["reference"].endswith("digits, 12 images") and "noise" in protocol["generated"]
    assert "reconstruction" not in reports["noise"]
