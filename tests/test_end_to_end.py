"""The whole chain on tiny settings: tokenizer -> codes -> GPT prior -> samples -> FID report, then a rerun that
skips every finished step, and the mismatch errors between stages."""

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_config
from pipeline.core.errors import VqgenError
from pipeline.steps import prior as prior_step
from pipeline.steps import sample as sample_step
from pipeline.steps import tokenizer as tokenizer_step
from pipeline.core.code_dataset import CodeDataset

TINY = [
    "data.name=digits", "data.image_size=16",
    "tokenizer.hidden_channels=16", "tokenizer.res_channels=8", "tokenizer.n_res_blocks=1",
    "tokenizer.embed_dim=8", "tokenizer.quantizer.codebook_size=16",
    "tokenizer.train.max_epochs=1", "tokenizer.train.max_steps=6",
    "prior.gpt.n_layer=1", "prior.gpt.n_head=2", "prior.gpt.n_embd=16",
    "prior.train.max_epochs=1", "prior.train.max_steps=4",
    "sample.n=12", "fid.max_reference=24", "fid.n_reconstructions=12",
]


def sets(extra=()):
    out = []
    for item in [*TINY, *extra]:
        out += ["--set", item]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e") / "run"


def test_whole_chain(run, inception_weights, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"run_dir: {run}\nfid:\n  inception_weights: {inception_weights}\n")
    result = CliRunner().invoke(app, ["run", str(config), *sets()])
    assert result.exit_code == 0, result.output
    # Each training ends with one line of figures.
    assert re.search(r"tokenizer: \d+ epoch\(s\), \d+ steps in \d+ s; perplexity [\d.]+", result.output)
    assert re.search(r"prior-gpt: .*; train NLL [\d.]+ bits/code", result.output), result.output
    codes = CodeDataset(run / "codes" / "train")
    assert codes.grid == [4, 4] and codes.codebook_sizes == [16] and len(codes) == 1497
    assert codes.rows(0, len(codes))[0].shape == (1497, 4, 4, 1)
    assert (run / "samples-gpt" / "grid.png").exists() and len(list((run / "samples-gpt" / "png").iterdir())) == 12
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["generation"]["fid"] > 0 and metrics["reconstruction"]["rfid"] >= 0
    assert metrics["protocol"]["generated_count"] == 12
    assert metrics["protocol"]["weights"]["sha256"] != ""
    report = (run / "report" / "report.md").read_text()
    assert "Protocol" in report and "samples.png" in report
    # tokenizer directory rebuilds from its own files
    from stage1_tokenizer.tokenizer import Tokenizer
    tok = Tokenizer.load(run / "tokenizer")
    images = torch.zeros(2, 1, 16, 16)
    assert tok.decode(tok.encode(images)).shape == (2, 1, 16, 16)

    # The per-run page and the comparison table.
    report = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "cmp")])
    assert report.exit_code == 0, report.output
    for name in ("index.md", "index.html", "summary.json", "loss_curves.png", "reconstructions.png",
                 "codebook_usage.png", "samples-gpt.png"):
        assert (run / "summary" / name).exists(), name
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert rows[0]["FID"] == f"{metrics['generation']['fid']:.4g}" and rows[0]["prior"] == "gpt"

    # A second run skips every finished step.
    again = CliRunner().invoke(app, ["run", str(config), *sets()])
    assert again.exit_code == 0, again.output
    assert again.output.count("done already") == 6

    # A changed sampling setting redoes only sampling and the report.
    third = CliRunner().invoke(app, ["run", str(config), *sets(["sample.temperature=0.9"])])
    assert third.exit_code == 0, third.output
    assert third.output.count("done already") == 4


def test_prior_refuses_another_tokenizer(run, tmp_path):
    if not (run / "prior-gpt").exists():
        pytest.skip("needs the chain above")
    cfg = load_config([], [*TINY, f"run_dir={tmp_path}", "tokenizer.quantizer.codebook_size=8", "seed=1"])
    other = tokenizer_step.run(cfg, tmp_path / "tokenizer")
    with pytest.raises(VqgenError) as err:
        sample_step.run(cfg, run / "prior-gpt", other, tmp_path / "samples")
    assert "sha256" in str(err.value) and str(other) in str(err.value)


def test_prior_refuses_codes_of_another_shape(run, tmp_path):
    if not (run / "codes").exists():
        pytest.skip("needs the chain above")
    cfg = load_config([], [*TINY, f"run_dir={tmp_path}", "prior.codebook_sizes=[32]"])
    with pytest.raises(VqgenError) as err:
        prior_step.run(cfg, run / "codes", tmp_path / "prior")
    assert "[32]" in str(err.value) and "[16]" in str(err.value)
