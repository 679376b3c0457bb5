"""Every shipped tokenizer config (configs/tokenizer/*.yaml) validates and trains a few steps.

The files are MNIST settings; here they run on the built-in digits at 16x16 with a small network, keeping each
file's quantizer and architecture (the part that differs between them), so a broken option fails here and not
an hour into a user's run.
"""

from __future__ import annotations

import pytest
import torch

from conftest import REPO
from pipeline.config import load_config
from pipeline.core.images import to_float
from pipeline.datasets import load_split
from pipeline.steps.tokenizer import run as train_tokenizer
from stage1_tokenizer.tokenizer import Tokenizer

CONFIGS = sorted((REPO / "configs" / "tokenizer").glob("*.yaml"))
SMALL = ["data.name=digits", "data.image_size=16", "tokenizer.hidden_channels=16", "tokenizer.res_channels=8",
         "tokenizer.n_res_blocks=1", "tokenizer.train.batch_size=64", "tokenizer.train.max_steps=3",
         "tokenizer.train.max_epochs=-1", "tokenizer.train.accelerator=cpu"]


def test_there_is_a_config_per_quantizer_and_for_vqvae2():
    from stage1_tokenizer.quantizers import QUANTIZERS

    assert {path.stem for path in CONFIGS} >= set(QUANTIZERS) | {"vqvae2"}


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_trains_a_few_steps(config, tmp_path, lpips_weights_file):
    cfg = load_config([config], SMALL)
    out = train_tokenizer(cfg, tmp_path / "tokenizer")
    model = Tokenizer.load(out).eval()
    assert model.config.quantizer.name == cfg.tokenizer.quantizer.name
    assert model.config.arch == cfg.tokenizer.arch

    images = to_float(load_split(cfg.data, "test").images[:8])
    with torch.no_grad():
        codes = model.encode(images)
        reconstruction = model.decode(codes)
    for name, level in model.levels().items():
        grid, sizes = level["grid"], level["codebook_sizes"]
        assert codes[name].shape == (8, *grid, len(sizes))
        assert (codes[name] >= 0).all()
        assert (codes[name] < torch.tensor(sizes)).all(), f"{name} codes outside {sizes}"
    assert reconstruction.shape == images.shape and torch.isfinite(reconstruction).all()


EXPERIMENTS = sorted((REPO / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("quantizer", ["vq", "ema", "fsq", "sq"])
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=[path.stem for path in EXPERIMENTS])
def test_results_table_configs_combine(experiment, quantizer):
    """The results table merges a tokenizer file and then a dataset file; the dataset file's data must win."""
    import yaml

    cfg = load_config([REPO / "configs" / "tokenizer" / f"{quantizer}.yaml", experiment])
    wanted = yaml.safe_load(experiment.read_text())["data"]
    assert cfg.tokenizer.quantizer.name == quantizer
    assert cfg.data.model_dump(include=set(wanted)) == wanted
    assert cfg.tokenizer.downsample == 4 and cfg.data.image_size == 32  # 8x8 latents

