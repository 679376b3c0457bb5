"""Bad input and bad luck: every case ends in one clear line and exit code 2 (the traceback only with --debug),
and no earlier file is lost. Image folders with broken, odd or too few images; wrong configs; sizes of zero or
less; damaged, foreign or mismatched code datasets; a prior of another vocabulary; NaN/Inf in training; a full
disk; damaged or malicious checkpoints; FID weights that are missing with no network."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers_reliability import (PRIOR_TINY, STEPS_PER_EPOCH, TOKENIZER_TINY, assert_clear_error, invoke,
                                 load_checkpoint_safely, sets, temporaries)
from pipeline.config import load_config
from pipeline.datasets import load_split
from pipeline.core.errors import VqgenError
from pipeline.core.files import sha256_file, write_json
from pipeline.core.code_dataset import CodeDataset, write_code_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny tokenizer (2 epochs), its codes, and a GPT prior (1 epoch), trained once for the module."""
    run = tmp_path_factory.mktemp("trained")
    tiny = [*TOKENIZER_TINY, "tokenizer.train.max_epochs=2", *PRIOR_TINY, "prior.train.max_epochs=1"]
    for args in (["tokenizer", "train"], ["tokenize"], ["prior", "train"]):
        code, output = invoke([*args, "--run-dir", run, *sets(tiny)])
        assert code == 0, output
    return run


def test_step_commands_write_their_resolved_config(trained):
    """Each step command leaves the config it ran with beside its outputs, loadable as it is."""
    for output in ("tokenizer", "codes", "prior-gpt"):
        cfg = load_config([trained / output / "config.yaml"])
        assert cfg.tokenizer.quantizer.codebook_size == 16 and cfg.prior.gpt.n_layer == 1, output


def copy_run(trained: Path, tmp_path: Path, *parts: str) -> Path:
    run = tmp_path / "run"
    for part in parts:
        shutil.copytree(trained / part, run / part)
    return run


def tokenizer_train(run: Path, *extra: str, data: tuple = ()) -> tuple[int, str]:
    return invoke(["tokenizer", "train", "--run-dir", run, *data, *sets([*TOKENIZER_TINY, *extra])])


# --- image folders -------------------------------------------------------------------------------------------------

def png(path: Path, mode: str = "RGB", size=(8, 8), colour=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    value = {"L": colour[0], "I;16": colour[0] * 256, "RGBA": (*colour, 0), "P": 3}.get(mode, colour)
    Image.new(mode, size, value).save(path)
    return path


def image_folder(root: Path, per_class: int = 4, classes=("a", "b")) -> Path:
    for split in ("train", "test"):
        for name in classes:
            for i in range(per_class):
                png(root / split / name / f"{i}.png", colour=(10 * i, 20, 30))
    return root


def folder_config(root: Path, *extra: str):
    return load_config([], ["data.name=imagefolder", f"data.root={root}", *extra])


def test_broken_images_are_skipped_and_counted(tmp_path, capsys):
    root = image_folder(tmp_path / "images")
    truncated = root / "train" / "a" / "truncated.png"
    data = (root / "train" / "a" / "0.png").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (root / "train" / "a" / "empty.png").write_bytes(b"")
    (root / "train" / "b" / "text.jpg").write_text("not an image")
    (root / "train" / "b" / "folder.png").mkdir()
    split = load_split(folder_config(root).data, "train")
    assert len(split) == 8 and split.skipped == 4
    assert "skipped 4 unreadable image file(s)" in capsys.readouterr().err


def test_broken_image_with_on_bad_image_fail_names_the_file(tmp_path):
    root = image_folder(tmp_path / "images")
    (root / "train" / "b" / "zzz.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, output = tokenizer_train(tmp_path / "run", "data.on_bad_image=fail",
                                   data=("--data", "imagefolder", "--data-root", root))
    assert_clear_error(code, output, "zzz.png", "data.on_bad_image=skip")


def test_every_image_unreadable(tmp_path):
    root = tmp_path / "images"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "x.png").write_bytes(b"nope")
    code, output = tokenizer_train(tmp_path / "run", data=("--data", "imagefolder", "--data-root", root))
    assert_clear_error(code, output, "none of the 1 images")


def test_grayscale_rgba_palette_and_16_bit_mix_with_rgb(tmp_path):
    root = tmp_path / "images"
    for split in ("train", "test"):
        png(root / split / "a" / "rgb.png", "RGB", colour=(200, 100, 50))
        png(root / split / "a" / "gray.png", "L", colour=(77,))
        png(root / split / "b" / "rgba.png", "RGBA", colour=(10, 20, 30))
        png(root / split / "b" / "palette.png", "P")
        png(root / split / "b" / "gray16.png", "I;16", colour=(40,))
    rgb = load_split(folder_config(root).data, "train")
    assert rgb.images.shape == (5, 3, 8, 8) and rgb.images.dtype == torch.uint8
    by_name = dict(zip(["gray", "rgb", "gray16", "palette", "rgba"], rgb.images))
    assert by_name["rgb"][:, 0, 0].tolist() == [200, 100, 50]
    assert by_name["gray"][:, 0, 0].tolist() == [77, 77, 77]
    assert by_name["rgba"][:, 0, 0].tolist() == [10, 20, 30]  # alpha dropped, colour kept
    gray = load_split(folder_config(root, "data.channels=1").data, "train")
    assert gray.images.shape == (5, 1, 8, 8)


def test_images_smaller_than_the_model_input_are_resized(tmp_path):
    root = tmp_path / "images"
    for split in ("train", "test"):
        png(root / split / "a" / "tiny.png", size=(4, 4), colour=(120, 60, 30))
        png(root / split / "a" / "wide.png", size=(12, 6), colour=(120, 60, 30))
        png(root / split / "b" / "big.png", size=(40, 40), colour=(120, 60, 30))
    data = load_split(folder_config(root, "data.image_size=16").data, "train")
    assert data.images.shape == (3, 3, 16, 16)
    assert (data.images[:, 0] == 120).all() and (data.images[:, 2] == 30).all()  # constant colour survives
    # Without data.image_size every image takes the first one's size (class a's tiny.png: 4px).
    assert load_split(folder_config(root).data, "test").images.shape[-2:] == (4, 4)


def test_train_and_test_folders_with_different_classes_keep_one_label_per_class(tmp_path):
    root = tmp_path / "images"
    for name in ("cat", "dog", "emu"):
        png(root / "train" / name / "0.png")
    for name in ("dog", "emu"):  # no cat in test/
        png(root / "test" / name / "0.png")
    cfg = folder_config(root).data
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.classes == test.classes == ["cat", "dog", "emu"]
    assert test.labels.tolist() == [1, 2]  # dog is 1 in both splits


@pytest.mark.parametrize("layout, message", [
    ("no_class_folders", "has no class sub-folders"),
    ("empty_class_folders", "has class folders but no images"),
    ("only_other_files", "has class folders but no images"),
    ("one_image_no_splits", "too few to split 90/10"),
    ("no_test_folder", "has a train/ folder but no test/ folder"),
    ("missing_root", "does not exist"),
])
def test_empty_or_incomplete_folders(tmp_path, layout, message):
    root = tmp_path / "images"
    if layout == "no_class_folders":
        png(root / "loose.png")
    elif layout == "empty_class_folders":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
    elif layout == "only_other_files":
        (root / "a").mkdir(parents=True)
        (root / "a" / "notes.txt").write_text("x")
    elif layout == "one_image_no_splits":
        png(root / "a" / "only.png")
    elif layout == "no_test_folder":
        png(root / "train" / "a" / "0.png")
    code, output = tokenizer_train(tmp_path / "run", data=("--data", "imagefolder", "--data-root", root))
    assert_clear_error(code, output, message)


# --- configs -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, needles", [
    ("tokenizer:\n  hidden_channels: many\n", ["tokenizer.hidden_channels", "integer"]),
    ("prior:\n  gpt:\n    n_layers: 2\n", ["prior.gpt.n_layers", "unknown key"]),
    ("tokenizr:\n  embed_dim: 8\n", ["tokenizr", "unknown key"]),
    ("data:\n  image_size: [16, 16]\n", ["data.image_size"]),
    ("tokenizer:\n  train: {lr: fast}\n", ["tokenizer.train.lr"]),
    ("sample:\n  label: everyone\n", ["sample.label"]),
    ("- a\n- list\n", ["must hold a mapping"]),
    ("tokenizer: {hidden_channels: 3\n", ["is not valid YAML"]),
    ("tokenizer:\n  quantizer: {name: vq, codebook_size: 1.5}\n", ["codebook_size", "int"]),
    ("tokenizer:\n  quantizer: {name: nope}\n", ["unknown quantizer 'nope'"]),
], ids=["type", "nested-unknown-key", "unknown-section", "list-for-int", "string-for-float", "bad-literal",
        "not-a-mapping", "yaml-syntax", "quantizer-option-type", "unknown-quantizer"])
def test_wrong_yaml_types_and_unknown_keys(tmp_path, text, needles):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    code, output = invoke(["run", config, "--run-dir", tmp_path / "run"])
    assert_clear_error(code, output, *needles, str(config))  # names the key (or the problem) and the file
    assert not (tmp_path / "run").exists()  # nothing was started


def test_override_without_equals_sign(tmp_path):
    code, output = invoke(["tokenizer", "train", "--run-dir", tmp_path, "--set", "tokenizer.embed_dim"])
    assert_clear_error(code, output, "must look like key.path=value")


@pytest.mark.parametrize("override, needle", [
    ("data.image_size=0", "data.image_size"),
    ("data.image_size=-16", "data.image_size"),
    ("data.image_size=18", "not divisible by tokenizer.downsample 4"),
    ("tokenizer.hidden_channels=0", "tokenizer.hidden_channels"),
    ("tokenizer.embed_dim=-8", "tokenizer.embed_dim"),
    ("tokenizer.downsample=3", "power of two"),
    ("tokenizer.train.batch_size=0", "tokenizer.train.batch_size"),
    ("tokenizer.train.lr=0", "tokenizer.train.lr"),
    ("tokenizer.train.max_epochs=-5", "tokenizer.train.max_epochs"),
    ("tokenizer.quantizer.codebook_size=0", "codebook_size must be positive"),
    ("tokenizer.quantizer.codebook_size=-3", "codebook_size must be positive"),
    ("prior.gpt.n_layer=0", "prior.gpt.n_layer"),
    ("sample.n=0", "sample.n"),
    ("sample.batch_size=-1", "sample.batch_size"),
    ("fid.max_reference=0", "fid.max_reference"),
])
def test_zero_and_negative_sizes(tmp_path, override, needle):
    code, output = tokenizer_train(tmp_path / "run", override)
    assert_clear_error(code, output, needle)
    assert not (tmp_path / "run" / "tokenizer" / "model.safetensors").exists()


def test_fsq_levels_below_two(tmp_path):
    code, output = tokenizer_train(tmp_path / "run", "tokenizer.quantizer={name: fsq, levels: [0, 3]}")
    assert_clear_error(code, output, "levels")


def test_debug_shows_the_traceback(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["tokenizer", "train", "--data", "nope", "--run-dir", str(tmp_path), "--debug"])
    assert isinstance(result.exception, VqgenError) and "unknown dataset" in str(result.exception)


# --- code datasets and priors --------------------------------------------------------------------------------------

def code_dataset(directory: Path, codes: torch.Tensor, sizes=(16,), labels=None, sha="a" * 64, classes=("x", "y")):
    meta = {"tokenizer": {"dir": "t", "weights_sha256": sha},
            "dataset": {"name": "x", "split": directory.name, "classes": list(classes)}}
    write_code_dataset(directory, {"codes": codes}, {"codes": {"grid": list(codes.shape[1:3]),
                                                                "codebook_sizes": list(sizes)}}, labels, meta)
    return directory


def rewrite_codes(directory: Path, **tensors: torch.Tensor) -> None:
    """Replace tensors inside codes.safetensors, as damage or a foreign writer would (meta.json unchanged)."""
    from safetensors.torch import load_file, save_file

    current = load_file(str(directory / "codes.safetensors"))
    current.update(tensors)
    save_file(current, str(directory / "codes.safetensors"))


def prior_train(codes_root: Path, run: Path, *extra: str) -> tuple[int, str]:
    return invoke(["prior", "train", "--codes", codes_root, "--run-dir", run, *sets([*PRIOR_TINY, *extra])])


@pytest.mark.parametrize("damage, needle", [
    ("above", "outside its codebook sizes [16]"),
    ("negative", "outside its codebook sizes [16]"),
    ("labels", "outside the 2 classes"),
    ("shape", "but meta.json says grid [4, 4]"),
    ("missing_level", "lacks the level(s) codes"),
    ("swapped", "does not match the sha256"),
    ("meta_garbled", "is not valid JSON"),
    ("truncated", "is not a readable safetensors file"),
])
def test_damaged_code_datasets_are_refused(tmp_path, damage, needle):
    codes = torch.randint(0, 16, (20, 4, 4, 1), generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 2
    root = tmp_path / "codes"
    train = code_dataset(root / "train", codes, labels=labels)
    if damage == "above":
        rewrite_codes(train, codes=torch.full((20, 4, 4, 1), 16, dtype=torch.uint8))
    elif damage == "negative":
        code_dataset(train, codes, sizes=(300,), labels=labels)  # int16 storage, which can hold -1
        meta = json.loads((train / "meta.json").read_text())
        meta["levels"][0]["codebook_sizes"] = [16]
        write_json(train / "meta.json", meta)
        rewrite_codes(train, codes=torch.full((20, 4, 4, 1), -1, dtype=torch.int16))
    elif damage == "labels":
        rewrite_codes(train, labels=torch.full((20,), 7))
    elif damage == "shape":
        rewrite_codes(train, codes=torch.zeros(20, 2, 8, 1, dtype=torch.uint8))
    elif damage == "missing_level":
        from safetensors.torch import save_file

        save_file({"labels": labels}, str(train / "codes.safetensors"))
    elif damage == "swapped":
        rewrite_codes(train, codes=((codes + 1) % 16).to(torch.uint8))
    elif damage == "meta_garbled":
        (train / "meta.json").write_text('{"format_version": 1, "lev')
    elif damage == "truncated":
        data = (train / "codes.safetensors").read_bytes()
        (train / "codes.safetensors").write_bytes(data[: len(data) // 2])
    code, output = prior_train(root, tmp_path / "run")
    assert_clear_error(code, output, needle)
    assert not (tmp_path / "run" / "prior-gpt" / "model.safetensors").exists()


def test_train_and_test_codes_of_different_tokenizers(tmp_path):
    codes = torch.randint(0, 16, (20, 4, 4, 1))
    root = tmp_path / "codes"
    code_dataset(root / "train", codes, sha="1" * 64)
    code_dataset(root / "test", codes, sha="2" * 64)
    code, output = prior_train(root, tmp_path / "run")
    assert_clear_error(code, output, "1" * 64, "2" * 64, "same tokenizer")


def test_train_and_test_codes_of_different_vocabularies(tmp_path):
    root = tmp_path / "codes"
    code_dataset(root / "train", torch.randint(0, 16, (20, 4, 4, 1)), sizes=(16,))
    code_dataset(root / "test", torch.randint(0, 32, (20, 4, 4, 1)), sizes=(32,))
    code, output = prior_train(root, tmp_path / "run")
    assert_clear_error(code, output, "[16]", "[32]")


def test_prior_with_another_vocabulary_is_refused(trained, tmp_path):
    code, output = prior_train(trained / "codes", tmp_path / "run", "prior.codebook_sizes=[32]")
    assert_clear_error(code, output, "prior.codebook_sizes is [32]", "has [16]")
    code, output = prior_train(trained / "codes", tmp_path / "run", "prior.grid=[8, 8]")
    assert_clear_error(code, output, "prior.grid is [8, 8]", "has [4, 4]")


def test_sampling_refuses_a_tokenizer_the_prior_was_not_trained_on(trained, tmp_path):
    from stage1_tokenizer.tokenizer import Tokenizer

    other = tmp_path / "other-tokenizer"
    model = Tokenizer.load(trained / "tokenizer")
    with torch.no_grad():
        next(model.quantizer.parameters()).mul_(2)
    model.save(other)
    code, output = invoke(["sample", "--prior", trained / "prior-gpt", "--tokenizer", other, "--out",
                           tmp_path / "samples", "--n", "4", *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, sha256_file(other / "model.safetensors"),
                       sha256_file(trained / "tokenizer" / "model.safetensors"))
    assert not (tmp_path / "samples").exists()


def test_damaged_model_directories_are_refused(trained, tmp_path):
    run = copy_run(trained, tmp_path, "tokenizer", "prior-gpt")
    data = (run / "prior-gpt" / "model.safetensors").read_bytes()
    (run / "prior-gpt" / "model.safetensors").write_bytes(data[:-10])
    code, output = invoke(["sample", "--run-dir", run, "--n", "4", *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "does not match the sha256", "retrain it")
    code, output = invoke(["tokenize", "--tokenizer", run / "prior-gpt", "--run-dir", run, *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "not a tokenizer")


def test_sample_npz_holds_the_pngs_in_adm_layout(trained, tmp_path):
    import numpy as np
    from PIL import Image

    run = copy_run(trained, tmp_path, "tokenizer", "prior-gpt")
    code, output = invoke(["sample", "--run-dir", run, "--n", "4", "--npz", tmp_path / "adm" / "samples.npz",
                           *sets(TOKENIZER_TINY)])
    assert code == 0, output
    with np.load(tmp_path / "adm" / "samples.npz") as loaded:
        array = loaded["arr_0"]
    assert array.dtype == np.uint8 and array.shape == (4, 16, 16, 3)
    pngs = sorted((run / "samples-gpt" / "png").iterdir())
    for png, image in zip(pngs, array):
        gray = np.asarray(Image.open(png))
        assert (image == gray[:, :, None]).all()


def test_sample_npz_with_another_suffix_fails_before_sampling(trained, tmp_path):
    run = copy_run(trained, tmp_path, "tokenizer", "prior-gpt")
    code, output = invoke(["sample", "--run-dir", run, "--n", "4", "--npz", tmp_path / "samples.txt",
                           *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "ending in .npz")
    assert not (run / "samples-gpt").exists()


def test_label_outside_the_prior_classes(trained, tmp_path):
    run = copy_run(trained, tmp_path, "tokenizer", "prior-gpt")
    code, output = invoke(["sample", "--run-dir", run, "--n", "4", "--label", "12", *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "--label 12 is outside the prior's 10 classes")


# --- NaN and Inf in training ---------------------------------------------------------------------------------------

def test_exploding_learning_rate_stops_with_the_step(tmp_path):
    code, output = tokenizer_train(tmp_path / "run", "tokenizer.train.lr=1e30")
    assert_clear_error(code, output, "the loss became", "at step", "no checkpoint was written yet",
                       "gradient_clip_val")
    assert not (tmp_path / "run" / "tokenizer" / "model.safetensors").exists()


def test_exploding_prior_stops_too(trained, tmp_path):
    code, output = prior_train(trained / "codes", tmp_path / "run", "prior.train.lr=1e30", "prior.train.warmup_steps=0")
    assert_clear_error(code, output, "the loss became", "at step")


def test_nan_loss_after_a_checkpoint_names_it_and_keeps_it(tmp_path, monkeypatch):
    from stage1_tokenizer.lightning_module import TokenizerModule

    original = TokenizerModule.training_step

    def training_step(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.global_step >= STEPS_PER_EPOCH + 1 else loss

    monkeypatch.setattr(TokenizerModule, "training_step", training_step)
    code, output = tokenizer_train(tmp_path / "run")
    last = tmp_path / "run" / "tokenizer" / "checkpoints" / "last.ckpt"
    assert_clear_error(code, output, f"at step {STEPS_PER_EPOCH + 2} (epoch 1)", f"the last good checkpoint is {last}")
    checkpoint = load_checkpoint_safely(last)
    assert checkpoint["global_step"] == STEPS_PER_EPOCH
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "tokenizer" / "model.safetensors").exists()


def test_nan_weights_at_an_epoch_end_are_never_saved_as_a_good_checkpoint(tmp_path, monkeypatch):
    """The last batch of epoch 2 turns a weight into NaN while its own loss is finite: the end-of-epoch checkpoint
    is refused and last.ckpt keeps epoch 1."""
    from stage1_tokenizer.lightning_module import TokenizerModule

    def on_train_batch_end(self, outputs, batch, batch_idx):  # after the loss check and the optimizer step
        if self.global_step == 2 * STEPS_PER_EPOCH:
            with torch.no_grad():
                weight = next(self.model.decoder.parameters())  # channels_last: index it, no flat view
                weight[(0,) * weight.dim()] = float("inf")

    monkeypatch.setattr(TokenizerModule, "on_train_batch_end", on_train_batch_end)
    code, output = tokenizer_train(tmp_path / "run")
    assert_clear_error(code, output, "the weights became NaN/Inf", "not saving them", "the last good checkpoint")
    last = tmp_path / "run" / "tokenizer" / "checkpoints" / "last.ckpt"
    assert load_checkpoint_safely(last)["global_step"] == STEPS_PER_EPOCH


# --- full disk -----------------------------------------------------------------------------------------------------

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_saving_weights_keeps_the_previous_ones(trained, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path, "tokenizer")
    before = sha256_file(run / "tokenizer" / "model.safetensors")
    monkeypatch.setattr("pipeline.core.files.save_file", enospc)
    code, output = invoke(["tokenizer", "train", "--run-dir", run,
                           *sets([*TOKENIZER_TINY, "tokenizer.train.max_epochs=2"])])
    assert_clear_error(code, output, "model.safetensors", "the disk is full", "untouched")
    assert sha256_file(run / "tokenizer" / "model.safetensors") == before
    from stage1_tokenizer.tokenizer import Tokenizer

    Tokenizer.load(run / "tokenizer")  # still whole and consistent with its config.json
    assert temporaries(run) == []


def test_full_disk_at_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    write_json(target, {"v": 1})
    monkeypatch.setattr("pipeline.core.files.os.replace", enospc)
    with pytest.raises(VqgenError, match="the disk is full"):
        write_json(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1} and temporaries(tmp_path) == []


def test_failed_swap_of_a_folder_puts_the_old_one_back(tmp_path, monkeypatch):
    from pipeline.core import files

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("old")
    real, calls = files.os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the new folder into place
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(VqgenError):
        with files.atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_full_disk_while_writing_codes_keeps_the_previous_codes(trained, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path, "tokenizer", "codes")
    before = sha256_file(run / "codes" / "train" / "codes.safetensors")
    monkeypatch.setattr("pipeline.core.files.save_file", enospc)
    code, output = invoke(["tokenize", "--run-dir", run, "--split", "train", *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "codes.safetensors", "the disk is full")
    assert sha256_file(run / "codes" / "train" / "codes.safetensors") == before
    CodeDataset(run / "codes" / "train")
    assert temporaries(run) == []


def test_full_disk_while_writing_sample_images(trained, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path, "tokenizer", "prior-gpt")
    code, output = invoke(["sample", "--run-dir", run, "--n", "4", *sets(TOKENIZER_TINY)])
    assert code == 0, output
    grid = sha256_file(run / "samples-gpt" / "grid.png")
    monkeypatch.setattr(Image.Image, "save", enospc)
    code, output = invoke(["sample", "--run-dir", run, "--n", "4", "--seed", "3", *sets(TOKENIZER_TINY)])
    assert_clear_error(code, output, "samples-gpt", "the disk is full")
    assert sha256_file(run / "samples-gpt" / "grid.png") == grid
    assert len(list((run / "samples-gpt" / "png").iterdir())) == 4 and temporaries(run) == []


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:859] . PytorchStreamWriter failed writing "
                               "file data/3: file write failed")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, output = tokenizer_train(tmp_path / "run")
    assert_clear_error(code, output, "could not write the checkpoint", "is the disk full", "untouched")
    last = tmp_path / "run" / "tokenizer" / "checkpoints" / "last.ckpt"
    assert load_checkpoint_safely(last)["global_step"] == STEPS_PER_EPOCH and temporaries(tmp_path) == []


def test_unwritable_run_directory(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    (tmp_path / "ro").mkdir(mode=0o500)
    code, output = tokenizer_train(tmp_path / "ro" / "run")
    assert_clear_error(code, output, "could not write")


# --- checkpoints that must not be trusted ----------------------------------------------------------------------------

def planted_checkpoint(run: Path, content: bytes) -> Path:
    """A last.ckpt where the next `tokenizer train` with the same config resumes from."""
    from pipeline.steps.tokenizer import fingerprint as tokenizer_fingerprint

    cfg = load_config([], [*TOKENIZER_TINY, f"run_dir={run}"])
    ckpt_dir = run / "tokenizer" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    write_json(ckpt_dir / "fingerprint.json", {"fingerprint": tokenizer_fingerprint(cfg)})
    (ckpt_dir / "last.ckpt").write_bytes(content)
    return ckpt_dir / "last.ckpt"


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    last = planted_checkpoint(tmp_path / "run", b"PK\x03\x04 this is no checkpoint")
    code, output = tokenizer_train(tmp_path / "run")
    assert_clear_error(code, output, f"cannot resume from {last}", "Move it aside")
    assert last.read_bytes().startswith(b"PK")  # left where it was, for the user to look at


class Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (self.marker, "w"))


def test_checkpoint_with_a_pickled_payload_is_never_unpickled(tmp_path):
    import io

    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "payload": Payload(str(marker))}, buffer)
    last = planted_checkpoint(tmp_path / "run", buffer.getvalue())
    code, output = tokenizer_train(tmp_path / "run")
    assert_clear_error(code, output, f"cannot resume from {last}")
    assert not marker.exists()


def test_loading_never_unpickles_in_the_package_source():
    """Models and codes are safetensors + JSON; every torch.load passes weights_only=True; nothing else unpickles."""
    sources = [p for folder in ("pipeline", "stage1_tokenizer", "stage2_prior") for p in (REPO / folder).rglob("*.py")]
    assert sources
    offenders = []
    for path in sources:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):  # the whole call, nested parentheses included
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[match.start(): end + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(REPO)}: {call}")
        for pattern in (r"^\s*(import|from)\s+(c?pickle|dill|joblib|cloudpickle)\b", r"\bpickle\.loads?\(",
                        r"allow_pickle\s*=\s*True", r"\bload_from_checkpoint\("):
            for line in re.finditer(pattern, text, flags=re.M):
                offenders.append(f"{path.relative_to(REPO)}: {line.group(0).strip()}")
    assert offenders == []


def test_resume_reads_checkpoints_with_weights_only(monkeypatch, tmp_path):
    from pipeline.training import AtomicCheckpointIO

    seen = []
    real = torch.load

    def load(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    torch.save({"x": torch.ones(1)}, tmp_path / "c.ckpt")
    AtomicCheckpointIO().load_checkpoint(tmp_path / "c.ckpt", weights_only=False)  # even when asked otherwise
    assert seen == [True]


# --- FID weights -----------------------------------------------------------------------------------------------------

def test_missing_inception_weights_without_network(tmp_path, monkeypatch):
    monkeypatch.delenv("VQGEN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", offline)
    code, output = invoke(["fid", "--run-dir", tmp_path / "run"])
    assert_clear_error(code, output, "could not download the FID Inception weights", "--inception-weights",
                       "VQGEN_INCEPTION_WEIGHTS")
    code, output = invoke(["fid", "--run-dir", tmp_path / "run", "--inception-weights", tmp_path / "absent.pth"])
    assert_clear_error(code, output, "absent.pth does not exist")


def test_inception_weights_with_a_pickled_payload_are_refused(tmp_path):
    """torch-fidelity reads the weights with weights_only=False: vqgen checks the file with weights_only=True first."""
    marker = tmp_path / "PWNED"
    torch.save({"conv.weight": torch.zeros(1), "payload": Payload(str(marker))}, tmp_path / "inception.pth")
    code, output = invoke(["fid", "--run-dir", tmp_path / "run", "--inception-weights", tmp_path / "inception.pth"])
    assert_clear_error(code, output, "is not a plain state_dict of tensors")
    assert not marker.exists()


def test_the_offline_inception_weights_pass_the_safety_check(inception_weights):
    import pipeline.fid as fid

    fid.check_weights_available(inception_weights)
